"""Security events: one structured log line and one metric per event.

Every event goes to the `auth_service.audit` logger (as JSON with the request id and client
address of the request it happened in) and counts in `auth_events_total{event,outcome}`.
Fields are ids and reasons only, never secrets.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Histogram

from auth_service.logs import client_ip_var, request_id_var
from auth_service.metrics import LATENCY_BUCKETS

__all__ = ["Audit"]

log = logging.getLogger("auth_service.audit")


class Audit:
    """Audit log plus the service's own Prometheus metrics, in one registry per app."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._events = Counter(
            "auth_events_total",
            "Security events (register, login, refresh, reuse_detected, logout, revoke, ...)",
            ["event", "outcome"],
            registry=registry,
        )
        self.revocation_losses = Counter(
            "auth_revocation_store_losses_total",
            "Times the revocation store was found behind SQL's generation and reseeded",
            registry=registry,
        )
        self.denylist_hits = Counter(
            "auth_denylist_hits_total", "Access tokens refused as revoked", registry=registry
        )
        self.hash_seconds = Histogram(
            "auth_password_hash_seconds",
            "Time of one argon2 hash or verify on a pool thread",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
            registry=registry,
        )
        self.hash_rejections = Counter(
            "auth_hash_rejections_total",
            "Requests refused (503) because every argon2 thread and waiting place was taken",
            registry=registry,
        )
        # Password grants wait for argon2 (up to the 5 s queue wait), refreshes do not.
        self.grant_seconds = Histogram(
            "auth_token_grant_seconds",
            "Time to answer POST /token, by grant type",
            ["grant_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.purged_rows = Counter(
            "auth_purged_rows_total",
            "Expired rows deleted by housekeeping, by kind",
            ["kind"],
            registry=registry,
        )
        self.dependency_errors = Counter(
            "auth_dependency_errors_total",
            "Requests failed because a dependency was unreachable",
            ["dependency"],
            registry=registry,
        )

    def record(
        self,
        event: str,
        *,
        outcome: str = "success",
        user_id: str | None = None,
        client_id: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Count the event and write it to the audit log."""
        self._events.labels(event, outcome).inc()
        fields = {
            "event": event,
            "outcome": outcome,
            "user_id": user_id,
            "client_id": client_id,
            # Taken now, so the event keeps its request even if formatted later.
            "request_id": request_id_var.get(),
            "client_ip": client_ip_var.get(),
        }
        if reason is not None:
            fields["reason"] = reason
        log.info("%s %s", event, outcome, extra={k: v for k, v in fields.items() if v})

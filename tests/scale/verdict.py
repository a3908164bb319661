"""Judge a run from the client's records: the guarantees, and the per-fault figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Window", "judge"]

# What a request of each kind should get when nothing is wrong.
EXPECTED = {
    "register": {201},
    "login": {200},
    "me": {200},
    "refresh": {200},
    "logout": {204},
    "revoke": {200},
    "replay_access": {401},
    "replay_refresh": {400, 401},
}
# A request this close to a window still belongs to it (HAProxy's checks run every 0.5 s).
WINDOW_GRACE_SECONDS = 2.0
# What a resent request gets when the first replica had already done it (token consumed).
REPLAY_REFUSED = {"logout": {401}, "refresh": {400, 401}}
# HAProxy's answer to a request whose replica went silent (timeout server).
GATEWAY_TIMEOUT = 504
# How long HAProxy may route to a replica that was killed or cut off before it marks it
# DOWN: fall 2 x inter 0.5 s + check timeout 1 s, with a margin (cluster.py).
DETECTION_SECONDS = 3.0


@dataclass
class Window:
    """When a fault was injected and when the harness saw the system whole again."""

    name: str
    start: float
    end: float
    zero_failures: bool
    lossy: bool = False
    revocations_lost: bool = False

    def holds(self, record: dict[str, Any]) -> bool:
        return bool(self.start <= record["t1"] and record["t0"] <= self.end + WINDOW_GRACE_SECONDS)

    def revocation_lost(self, record: dict[str, Any]) -> bool:
        """A revoked token accepted while the fault's own deletion of revocations was not
        yet repaired (sent before the harness saw the store restored from SQL)."""
        return self.revocations_lost and self.start <= record["t1"] and record["t0"] <= self.end

    def lost_in_flight(self, record: dict[str, Any]) -> bool:
        """A request sent before HAProxy could know the replica was gone, whose answer was
        lost: a closed connection (no status), HAProxy's 504 when the replica went silent
        with the request (a cut link: no answer within `timeout server`, and HAProxy
        never resends what a replica may have done), or, when HAProxy resent it after an
        empty response (retry-on), the refusal of a replay of what the dead replica had
        already done (a logout or refresh whose token it consumed). Unavoidable when a
        replica is killed or cut off."""
        status = record["status"]
        return (
            self.lossy
            and (
                status is None
                or status == GATEWAY_TIMEOUT
                or status in REPLAY_REFUSED.get(record["op"], ())
            )
            and self.start <= record["t1"]
            and record["t0"] <= self.start + DETECTION_SECONDS
        )


@dataclass
class Verdict:
    """Which guarantees failed (with examples), and the per-fault table."""

    failures: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    table: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)

    def fail(self, check: str, example: dict[str, Any]) -> None:
        self.failures.setdefault(check, []).append(example)


def _failed(record: dict[str, Any]) -> bool:
    return record["status"] not in EXPECTED.get(record["op"], {record["status"]})


def _acceptable_outage(record: dict[str, Any]) -> bool:
    return record["status"] == 503 and bool(record.get("retry_after"))


def judge(records: list[dict[str, Any]], final: dict[str, Any], windows: list[Window]) -> Verdict:
    verdict = Verdict()
    load = [r for r in records if not r["op"].startswith("final_")]
    revoked_at: dict[str, float] = {**final["revoked_at"]}
    dead_at: dict[str, float] = {**final["dead_refresh_at"]}
    accepted_in_loss: list[dict[str, Any]] = []
    for record in load:
        token = record.get("token")
        # 1. nothing revoked or logged out before it was sent is accepted (but while a
        #    fault had deleted revocations and the service had not yet repaired it)
        if token in revoked_at and record["t0"] > revoked_at[token] and record["status"] == 200:
            if any(w.revocation_lost(record) for w in windows):
                accepted_in_loss.append(record)
                continue  # the fault's own doing, counted as revoked_accepted
            else:
                verdict.fail("revoked access token accepted", record)
        if record["op"] == "replay_refresh" and record["status"] == 200:
            verdict.fail("rotated or revoked refresh token accepted", record)
        if (
            token in dead_at
            and record["t0"] > dead_at[token]
            and record["op"] == "refresh"
            and record["status"] == 200
        ):
            verdict.fail("rotated or revoked refresh token accepted", record)
        if not _failed(record):
            continue
        around = [w for w in windows if w.holds(record)]
        # 2. a failure only inside a fault window, only 503 with Retry-After, never in the
        #    rolling restart or the key rotation; in the kill and link-cut windows a closed
        #    connection for a request sent before HAProxy could see the replica gone is
        #    counted (lost_in_flight), not judged: no service can answer it
        if not around:
            verdict.fail("failed request outside every fault window", record)
        elif any(w.zero_failures for w in around):
            verdict.fail(
                f"failed request during {'/'.join(w.name for w in around if w.zero_failures)}"
                " (zero allowed)",
                record,
            )
        elif any(w.lost_in_flight(record) for w in around):
            continue  # counted as lost_in_flight in the table, not a failed check
        elif not _acceptable_outage(record):
            status = record["status"]
            kind = "transport error" if status is None else f"status {status}"
            verdict.fail(f"{kind} inside a fault window (only 503 + Retry-After allowed)", record)
    # 3. the final checks of the client
    for example in final["cannot_log_in"]:
        verdict.fail("a registration that got 201 cannot log in at the end", example)
    for example in final["revoked_accepted"]:
        verdict.fail("revoked access token not refused at the end (LB or a replica)", example)
    for example in final["rotated_accepted"]:
        verdict.fail("rotated or revoked refresh token not refused at the end", example)
    for window in windows:
        inside = [r for r in load if window.holds(r)]
        if not inside:
            verdict.fail("no request during a fault window (it proves nothing)", vars(window))
        failed = [r for r in inside if _failed(r)]
        last_failure = max((r["t1"] for r in failed), default=window.start)
        verdict.table.append(
            {
                "fault": window.name,
                "requests": len(inside),
                "failed": len(failed),
                "503": sum(1 for r in failed if r["status"] == 503),
                "other_failures": sum(
                    1
                    for r in failed
                    if r["status"] != 503
                    and not window.lost_in_flight(r)
                    and r not in accepted_in_loss
                ),
                "lost_in_flight": sum(1 for r in failed if window.lost_in_flight(r)),
                "revoked_accepted": sum(1 for r in accepted_in_loss if window.revocation_lost(r)),
                "fault_seconds": round(window.end - window.start, 2),
                "seconds_to_recover": round(max(0.0, last_failure - window.start), 2),
            }
        )
    verdict.totals = {
        "load_requests": len(load),
        "load_failed": sum(1 for r in load if _failed(r)),
        "lost_in_flight": sum(
            1 for r in load if _failed(r) and any(w.lost_in_flight(r) for w in windows)
        ),
        "registered": final["registered"],
        "revoked_probed": final["revoked_probed"],
        "rotated_probed": final["rotated_probed"],
        "by_op": {op: sum(1 for r in load if r["op"] == op) for op in sorted(EXPECTED)},
    }
    return verdict

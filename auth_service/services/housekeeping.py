"""Deleting what has expired: codes, pending requests, browser and login sessions, MFA and
link tokens, revoked access tokens past their lifetime, deleted accounts past their hold.

Every row is kept for a retention period past the moment it stopped mattering, a day plus
the longest an access token lives, so nothing a check still reads is gone: a replayed code
within a day still revokes its session, a revocation reseed still finds every revoked
session whose tokens may be live, and a browser session is kept while a session opened
through it is open (a logout naming its `sid` ends those). Every replica sweeps on its own
schedule; each delete is idempotent, so two sweeps at once only share the work.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import timedelta

from auth_service.services.account_deletion import purge_deleted_accounts
from auth_service.services.context import ServiceContext

__all__ = ["RETENTION_BEYOND_TOKENS", "Housekeeper", "Swept", "sweep_expired"]

log = logging.getLogger(__name__)

RETENTION_BEYOND_TOKENS = timedelta(days=1)


@dataclass(frozen=True)
class Swept:
    """How many rows one sweep deleted, by kind."""

    authorizations: int  # pending requests and codes
    browser_sessions: int
    sessions: int
    mfa_tokens: int
    email_tokens: int
    revoked_access_tokens: int
    deleted_accounts: int  # names freed once AUTH_DELETED_USERNAME_HOLD_SECONDS passed

    @property
    def total(self) -> int:
        """Every row deleted."""
        return sum(vars(self).values())


async def sweep_expired(ctx: ServiceContext) -> Swept:
    """Delete every row past its expiry by more than the retention period, and the
    deleted accounts whose name hold ended."""
    now = ctx.clock()
    before = now - ctx.session_policy.access_token_horizon - RETENTION_BEYOND_TOKENS
    db = ctx.db
    swept = Swept(
        authorizations=await db.authorizations.purge_expired(before=before),
        browser_sessions=await db.browser_sessions.purge_expired(before=before, now=now),
        sessions=await db.sessions.purge_ended(before=before),
        mfa_tokens=await db.mfa.purge_tokens(before=before),
        email_tokens=await db.email_tokens.purge(before=before),
        revoked_access_tokens=await db.revocations.purge_expired(before=before),
        deleted_accounts=await purge_deleted_accounts(ctx),
    )
    for kind, count in vars(swept).items():
        if count:
            ctx.audit.purged_rows.labels(kind).inc(count)
    return swept


class Housekeeper:
    """Sweeps once soon after start, then every `every` (with jitter), until cancelled."""

    def __init__(self, ctx: ServiceContext, every: timedelta) -> None:
        self._ctx = ctx
        self._every = every.total_seconds()

    async def run(self) -> None:
        """The loop: a failed sweep (the database out of reach) is retried next time."""
        # Spread replicas started together over the first tenth of the interval.
        await asyncio.sleep(random.uniform(0, self._every / 10))  # noqa: S311 - not a secret
        while True:
            try:
                swept = await sweep_expired(self._ctx)
                if swept.total:
                    log.info("housekeeping: deleted %d expired rows (%s)", swept.total, swept)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("housekeeping: a sweep failed", exc_info=True)
            await asyncio.sleep(self._every * random.uniform(0.9, 1.1))  # noqa: S311

"""Is this access token still good? One store round trip, reseeded from SQL when needed.

SQL is the truth; the store (Redis or memory) is a TTL-bound cache of recent revocations.
When its epoch marker is missing (flushed, restarted, new process) it is rebuilt from SQL
before any token is trusted, so no revoked token comes back to life.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime

from auth_service.errors import InvalidToken, StoreUnavailable
from auth_service.security.tokens import AccessClaims
from auth_service.services.context import ServiceContext
from auth_service.stores import sessions as session_rows
from auth_service.stores.revocation import SeedData

__all__ = [
    "deny_sessions",
    "deny_sessions_eventually",
    "deny_token",
    "deny_user_tokens",
    "ensure_not_revoked",
    "reseed",
]

log = logging.getLogger(__name__)


def _seconds_until(when: datetime, now: datetime) -> int:
    return math.ceil((when - now).total_seconds())


async def ensure_not_revoked(ctx: ServiceContext, claims: AccessClaims) -> None:
    """Raise InvalidToken if the token, its session or its user's tokens were revoked.

    The user's entry is the lowest credential version still valid (set by a disable): a
    token carrying an older one is dead, however close to the disable it was minted.
    """
    if ctx.undelivered_sessions:
        await _deliver_pending(ctx)
    status = await ctx.revocations.status(
        token_id=claims.token_id, session_id=claims.session_id, user_id=claims.subject
    )
    if not status.seeded:
        await reseed(ctx)
        status = await ctx.revocations.status(
            token_id=claims.token_id, session_id=claims.session_id, user_id=claims.subject
        )
    user_cut = status.user_not_before
    if (
        status.token_revoked
        or status.session_revoked
        or (user_cut is not None and claims.credential_version < user_cut)
    ):
        ctx.audit.denylist_hits.inc()
        raise InvalidToken("the access token has been revoked")


async def reseed(ctx: ServiceContext) -> None:
    """Rebuild the store's recent revocations from SQL, then mark it seeded."""
    async with ctx.reseed_lock:
        probe = await ctx.revocations.status(token_id="-", session_id="-", user_id="-")  # noqa: S106
        if probe.seeded:
            return  # another request of this process reseeded meanwhile
        now = ctx.clock()
        horizon = ctx.session_policy.access_token_horizon
        async with ctx.sessions() as session:
            revoked_sessions, revoked_tokens, users = await session_rows.recent_revocations(
                session, since=now - horizon
            )
        data = SeedData(
            sessions=[(sid, _seconds_until(at + horizon, now)) for sid, at in revoked_sessions],
            tokens=[(jti, _seconds_until(exp + horizon, now)) for jti, exp in revoked_tokens],
            users=[(uid, version, _seconds_until(at + horizon, now)) for uid, version, at in users],
            generation=probe.generation,
        )
        await ctx.revocations.seed(data)
        log.warning(
            "revocation store reseeded from SQL: %d sessions, %d tokens, %d users",
            len(data.sessions),
            len(data.tokens),
            len(data.users),
        )


async def deny_sessions(ctx: ServiceContext, session_ids: list[str]) -> None:
    """Push session revocations (already committed to SQL) to every replica."""
    if session_ids:
        ttl = math.ceil(ctx.session_policy.access_token_horizon.total_seconds())
        await ctx.revocations.revoke_sessions(session_ids, ttl)


async def deny_sessions_eventually(ctx: ServiceContext, session_ids: list[str]) -> None:
    """Push session revocations already committed to SQL; if the store is unreachable, keep
    them and deliver them before this process trusts the store again (and a reseed after
    a restart reads them from SQL anyway)."""
    try:
        await deny_sessions(ctx, session_ids)
    except StoreUnavailable:
        ctx.undelivered_sessions.update(session_ids)
        log.warning(
            "revocation store unreachable: %d session revocations (committed to SQL) queued",
            len(session_ids),
        )


async def _deliver_pending(ctx: ServiceContext) -> None:
    """Deliver queued session revocations; StoreUnavailable (fail closed) if still down."""
    pending = sorted(ctx.undelivered_sessions)
    await deny_sessions(ctx, pending)
    ctx.undelivered_sessions.difference_update(pending)


async def deny_token(ctx: ServiceContext, token_id: str, expires_at: datetime) -> None:
    """Push one access-token revocation (already committed to SQL) to every replica."""
    ttl = _seconds_until(expires_at + ctx.session_policy.access_token_horizon, ctx.clock())
    await ctx.revocations.revoke_token(token_id, ttl)


async def deny_user_tokens(ctx: ServiceContext, user_id: str, credential_version: int) -> None:
    """Kill every access token of a user carrying a credential version below this one."""
    ttl = math.ceil(ctx.session_policy.access_token_horizon.total_seconds())
    # The store's per-user "not before" holds a credential version now, not a time.
    await ctx.revocations.set_user_not_before(user_id, credential_version, ttl)

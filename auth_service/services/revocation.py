"""Revocation: the invariants that keep a revoked token revoked, and the rules enforcing them.

SQL is the truth; the store (Redis shared by every replica, or the in-process MemoryStore
of the embedded default) is a TTL-bound cache of recent revocations that may lose
everything at any moment (FLUSHALL, a restart without persistence, a failover, another
process). This module is the one place these invariants are stated; stores/revocation.py
implements the store's half, the use cases call the `deny_*` rules below.

1. Seeded or not, never half-seeded (the epoch marker). A store answers a check with
   `seeded`; a negative answer counts only from a seeded store (`ensure_not_revoked`).
   The epoch marker stands only over a complete restore: `reseed` takes a ticket
   (`begin_seed`: in Redis a key of its own, which any flush deletes), then reads SQL,
   then `seed` writes every entry and the epoch in one script, only if the ticket still
   exists. A flush can neither split a restore nor slip in after its SQL read.
2. The store is written before SQL and again after the commit. Before: an unreachable
   store fails the call with nothing done (a retry is safe; if SQL then fails, tokens are
   merely dead a little early). After: a restore whose SQL read missed the commit either
   finds the entry in place when it writes (no flush since its ticket) or is refused (a
   flush deleted its ticket); an entry flushed later takes the epoch with it, and the
   next restore reads SQL after the commit. Reuse detection is the one exception: SQL
   first, then `deny_sessions_eventually`, which queues the write in-process while the
   store is down and delivers it before this process trusts the store again.
3. Writes never weaken an entry: a user's not-before (the lowest credential version
   still valid) only grows and no TTL shrinks, so a restore from an older SQL read or a
   late write cannot undo a newer revocation.
4. Other processes on the embedded default (the CLI's `users disable`, say) commit to SQL
   and then replace the change marker file in the data dir (`announce_change`); the
   MemoryStore stats it on every check and counts each change as a new generation.
5. Generations: a MemoryStore's restore ticket is the generation it began at, and it is
   seeded only while no change has been announced since; one announced while SQL was
   read keeps the store unseeded, and the next check restores again.
6. One restore at a time per process (`ctx.reseed_lock`): concurrent checks that find
   the store unseeded wait for one restore instead of each reading SQL, and re-check
   `seeded` first; a restore refused MAX_RESEED_ATTEMPTS times fails closed
   (StoreUnavailable, 503) rather than trust an unseeded store.

7. The generation mirror (a failover to a replica that lagged loses a suffix of the
   writes but keeps the epoch): SQL counts revocations (a generation bumped in the
   transaction of each); an after-commit write (`committed=True`) carries the generation
   read after its commit and raises the store's mirror to it in the same script, after
   the entries, so a store that kept the mirror kept every write before it; a restore
   sets it to the generation read before its SQL read. A mirror behind SQL means lost
   writes: `check_generation` calls `forget`, which deletes the epoch and refuses every
   restore begun before it (the ticket holds the loss count); the next check restores.
8. A write raises the mirror only from at least the `floor` it is given (SQL's
   generation at this process's last check): a mirror already behind SQL stays behind,
   so writes after a failover cannot hide the loss before a check sees it.

Hence once a revocation's after-commit write is done, every later check either finds its
entry or finds no epoch and restores from SQL (which holds it) before answering, and a
store that lost that write without losing its epoch is caught by the generation check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from datetime import datetime

from auth_service.errors import DatabaseUnavailable, InvalidToken, StoreUnavailable
from auth_service.security.tokens import AccessClaims
from auth_service.services.context import ServiceContext
from auth_service.stores.revocation import Mirror, RevocationStatus, SeedData

__all__ = [
    "check_generation",
    "deny_sessions",
    "deny_sessions_eventually",
    "deny_token",
    "deny_user_tokens",
    "ensure_not_revoked",
    "reseed",
    "watch_generation",
]

log = logging.getLogger(__name__)

# Restores refused (the store lost its state again meanwhile) before a check fails closed.
MAX_RESEED_ATTEMPTS = 5
# How often each process compares the store's generation mirror with SQL (two reads), and
# the least pause between two checks when store errors wake it sooner.
GENERATION_CHECK_SECONDS = 2.0
GENERATION_CHECK_MIN_GAP_SECONDS = 0.5


async def check_generation(ctx: ServiceContext) -> bool:
    """Catch a store that lost recent revocations but kept its epoch (a failover to a
    replica that had not received them): SQL's revocation generation read at one check
    must be mirrored by the store at the next (each after-commit write raises the mirror
    within milliseconds). If not, forget the store and restore it from SQL before it is
    trusted again. True if writes were lost."""
    seen = ctx.generation_seen
    mirror = await ctx.revocations.generation()
    lost = seen.sql is not None and (mirror is None or mirror < seen.sql)
    if lost and mirror is None:
        # never restored yet (a new prefix, an empty Redis): the epoch check restores it
        probe = await ctx.revocations.status(token_id="-", session_id="-", user_id="-")  # noqa: S106
        lost = probe.seeded
    if lost:
        log.warning(
            "revocation store is behind SQL (mirror %s, SQL %d): it lost writes; "
            "reseeding from SQL before trusting it",
            mirror,
            seen.sql,
        )
        ctx.audit.revocation_losses.inc()
        await ctx.revocations.forget()
        await reseed(ctx)
    seen.sql = await ctx.db.revocations.generation()
    return lost


async def watch_generation(ctx: ServiceContext, interval: float = GENERATION_CHECK_SECONDS) -> None:
    """Check every `interval`, and at once after a store error (a failover shows as one)."""
    errors = ctx.revocations.errors
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(errors.wait(), interval)
        errors.clear()
        try:
            await check_generation(ctx)
        except (StoreUnavailable, DatabaseUnavailable):
            log.info("revocation generation check: store or database unreachable")
        await asyncio.sleep(GENERATION_CHECK_MIN_GAP_SECONDS)


def _seconds_until(when: datetime, now: datetime) -> int:
    return math.ceil((when - now).total_seconds())


async def _status(ctx: ServiceContext, claims: AccessClaims) -> RevocationStatus:
    return await ctx.revocations.status(
        token_id=claims.token_id, session_id=claims.session_id, user_id=claims.subject
    )


async def ensure_not_revoked(ctx: ServiceContext, claims: AccessClaims) -> None:
    """Raise InvalidToken if the token, its session or its user's tokens were revoked.

    The user's entry is the lowest credential version still valid (set by a disable): a
    token carrying an older one is dead, however close to the disable it was minted. A
    negative answer counts only from a seeded store: read again after each restore, as
    the store may have been flushed once more in between.
    """
    if ctx.undelivered_sessions:
        await _deliver_pending(ctx)
    status = await _status(ctx, claims)
    restores = 0
    while not status.seeded:
        if restores == MAX_RESEED_ATTEMPTS:
            log.warning("revocation store lost its state after every reseed: failing closed")
            raise StoreUnavailable
        restores += 1
        await reseed(ctx)
        status = await _status(ctx, claims)
    user_cut = status.user_not_before
    if (
        status.token_revoked
        or status.session_revoked
        or (user_cut is not None and claims.credential_version < user_cut)
    ):
        ctx.audit.denylist_hits.inc()
        raise InvalidToken("the access token has been revoked")


async def reseed(ctx: ServiceContext) -> None:
    """Rebuild the store's recent revocations from SQL and mark it seeded, all at once.

    The ticket is taken before SQL is read: if the store loses its state (or hears of an
    outside change) before the write, the write is refused and SQL is read again.
    """
    async with ctx.reseed_lock:
        for _ in range(MAX_RESEED_ATTEMPTS):
            probe = await ctx.revocations.status(token_id="-", session_id="-", user_id="-")  # noqa: S106
            if probe.seeded:
                return  # another request of this process reseeded meanwhile
            ticket = await ctx.revocations.begin_seed()
            generation = await ctx.db.revocations.generation()  # before the revocations
            data = await _read_revocations(ctx, ticket, generation)
            if await ctx.revocations.seed(data):
                log.warning(
                    "revocation store reseeded from SQL: %d sessions, %d tokens, %d users",
                    len(data.sessions),
                    len(data.tokens),
                    len(data.users),
                )
                return
            log.warning("revocation store lost its state during a reseed: reading SQL again")
        log.warning("revocation store could not be reseeded: failing closed")
        raise StoreUnavailable


async def _read_revocations(ctx: ServiceContext, ticket: str, generation: int) -> SeedData:
    now = ctx.clock()
    horizon = ctx.session_policy.access_token_horizon
    leeway = ctx.tokens.leeway
    recent = await ctx.db.revocations.recent(since=now - horizon)
    tokens = [(jti, _seconds_until(exp + leeway, now)) for jti, exp in recent.tokens]
    return SeedData(
        sessions=[(sid, _seconds_until(at + horizon, now)) for sid, at in recent.sessions],
        # An access token is accepted until its exp plus the leeway, not a horizon later.
        tokens=[(jti, ttl) for jti, ttl in tokens if ttl > 0],
        users=[
            (uid, version, _seconds_until(at + horizon, now)) for uid, version, at in recent.users
        ],
        ticket=ticket,
        generation=generation,
    )


async def _mirror(ctx: ServiceContext, committed: bool) -> Mirror | None:
    """After a commit: SQL's generation now (it counts that commit), and the floor."""
    if not committed:
        return None
    floor = ctx.generation_seen.sql or 0  # stores/revocation.py, invariant 5
    return Mirror(await ctx.db.revocations.generation(), floor)


async def deny_sessions(
    ctx: ServiceContext, session_ids: list[str], *, committed: bool = False
) -> None:
    """Push session revocations to every replica: before the SQL commit and after it."""
    if session_ids:
        ttl = math.ceil(ctx.session_policy.access_token_horizon.total_seconds())
        mirror = await _mirror(ctx, committed)
        await ctx.revocations.revoke_sessions(session_ids, ttl, mirror)


async def deny_sessions_eventually(ctx: ServiceContext, session_ids: list[str]) -> None:
    """Push session revocations already committed to SQL; if the store is unreachable, keep
    them and deliver them before this process trusts the store again (and a reseed after
    a restart reads them from SQL anyway)."""
    try:
        await deny_sessions(ctx, session_ids, committed=True)
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


async def deny_token(
    ctx: ServiceContext, token_id: str, expires_at: datetime, *, committed: bool = False
) -> None:
    """Push one access-token revocation to every replica: before the SQL commit and after.

    The entry lives as long as the token can be accepted: its expiry plus the clock leeway.
    """
    ttl = _seconds_until(expires_at + ctx.tokens.leeway, ctx.clock())
    await ctx.revocations.revoke_token(token_id, ttl, await _mirror(ctx, committed))


async def deny_user_tokens(
    ctx: ServiceContext, user_id: str, credential_version: int, *, committed: bool = False
) -> None:
    """Kill every access token of a user carrying a credential version below this one:
    before the SQL commit and after it."""
    ttl = math.ceil(ctx.session_policy.access_token_horizon.total_seconds())
    # The store's per-user "not before" holds a credential version now, not a time.
    mirror = await _mirror(ctx, committed)
    await ctx.revocations.set_user_not_before(user_id, credential_version, ttl, mirror)

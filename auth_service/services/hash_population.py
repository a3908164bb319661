"""Keep the unknown-user dummy verify as costly as the stored hashes really are.

The hashing pool draws each unknown name's dummy from the parameters of a sample of the
stored hashes (see security/passwords.py). This module reads that sample at start and
again every few minutes, as owners log in and their hashes are upgraded.

The draw is keyed by a digest of the ids of the oldest accounts: the same on every
replica and after restarts, never shown to anyone but each account's own holder, and
fixed once those accounts exist (ids never change).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from datetime import timedelta

from auth_service.services.context import ServiceContext
from auth_service.stores import users

__all__ = ["keep_hash_population_current", "refresh_hash_population", "try_refresh"]

log = logging.getLogger(__name__)

SAMPLE_SIZE = 1000
KEY_ACCOUNTS = 16
REFRESH_EVERY = timedelta(minutes=10)
REFRESH_TIMEOUT = timedelta(seconds=5)


async def refresh_hash_population(ctx: ServiceContext, key: bytes | None = None) -> bytes | None:
    """Read a sample of the stored hashes and give its parameters to the hashing pool.

    Returns the draw key once it is final (KEY_ACCOUNTS accounts exist), so that later
    refreshes can pass it back and skip reading it.
    """
    async with asyncio.timeout(REFRESH_TIMEOUT.total_seconds()), ctx.sessions() as session:
        sample = await users.password_hash_sample(session, SAMPLE_SIZE)
        if key is None:
            key_ids = await users.oldest_user_ids(session, KEY_ACCOUNTS)
            key = hashlib.sha256("\n".join(["dummy-draw", *key_ids]).encode("utf-8")).digest()
            final = len(key_ids) == KEY_ACCOUNTS
        else:
            final = True
    await ctx.hasher.use_population(sample, key)
    return key if final else None


async def try_refresh(ctx: ServiceContext, key: bytes | None = None) -> bytes | None:
    """refresh_hash_population, logging a failure: the previous draw stays in use."""
    try:
        return await refresh_hash_population(ctx, key)
    except Exception:
        # Never fatal (a database down at start must not stop the service starting).
        log.warning("could not read the stored hash parameters", exc_info=True)
        return key


async def keep_hash_population_current(ctx: ServiceContext, every: timedelta) -> None:
    """Refresh every `every` until cancelled; the first refresh is the caller's."""
    key = None
    while True:
        await asyncio.sleep(every.total_seconds())
        key = await try_refresh(ctx, key)

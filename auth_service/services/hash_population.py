"""Keep the unknown-user dummy verify as costly as the stored hashes really are.

The hashing pool draws each unknown name's dummy from the parameters of a sample of the
stored hashes (see security/passwords.py). This module reads that sample at start and
again every few minutes, as owners log in and their hashes are upgraded.

The draw is keyed by a random secret kept in SQL (made once by the first replica that
needs it): the same on every replica and after restarts, and never shown to anyone.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta

from auth_service.services.context import ServiceContext

__all__ = ["keep_hash_population_current", "refresh_hash_population", "try_refresh"]

log = logging.getLogger(__name__)

SAMPLE_SIZE = 1000
KEY_NAME = "dummy_hash_draw"
REFRESH_EVERY = timedelta(minutes=10)
REFRESH_TIMEOUT = timedelta(seconds=5)


async def refresh_hash_population(ctx: ServiceContext, key: bytes | None = None) -> bytes:
    """Read a sample of the stored hashes and give its parameters to the hashing pool.

    Returns the draw key, which later refreshes pass back to skip reading it again.
    """
    async with asyncio.timeout(REFRESH_TIMEOUT.total_seconds()):
        if key is None:
            value = await ctx.db.secrets.ensure(KEY_NAME, secrets.token_hex(32))
            key = bytes.fromhex(value)
        sample = await ctx.db.hash_samples.sample(SAMPLE_SIZE)
    await ctx.hasher.use_population(sample, key)
    return key


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

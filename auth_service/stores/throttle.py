"""Failure counters for throttling, in Redis (shared by replicas) or in process memory.

A counter counts hits within a window that starts at its first hit. The counts of one
login are read in one round trip (an MGET); the seconds left in a window, for
Retry-After, are read only when a request is refused.
"""

from __future__ import annotations

import time
from typing import Protocol

from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError

from auth_service.errors import StoreUnavailable

__all__ = ["MemoryThrottleStore", "RedisThrottleStore", "ThrottleStore"]


class ThrottleStore(Protocol):
    """Windowed counters keyed by opaque strings."""

    async def counts(self, keys: list[str]) -> list[int]:
        """Hits in each key's current window (0 when none)."""
        ...

    async def seconds_left(self, key: str) -> int:
        """Seconds until the key's window ends (0 when it has none)."""
        ...

    async def hit(self, keys: list[str], window_seconds: int) -> None:
        """Count one hit on each key; a key's window starts at its first hit."""
        ...

    async def settle(self, clear: list[str], hit: list[str], window_seconds: int) -> None:
        """Forget `clear` and hit `hit`, in one round trip."""
        ...


class RedisThrottleStore:
    """INCR + EXPIRE NX per key; any Redis failure becomes StoreUnavailable."""

    def __init__(self, client: redis_asyncio.Redis, *, prefix: str) -> None:
        self._redis = client
        self._prefix = f"{prefix}throttle:"

    async def counts(self, keys: list[str]) -> list[int]:
        try:
            raw = await self._redis.mget([self._prefix + key for key in keys])
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc
        return [int(value or 0) for value in raw]

    async def seconds_left(self, key: str) -> int:
        try:
            ttl = await self._redis.ttl(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc
        return max(0, int(ttl))

    async def hit(self, keys: list[str], window_seconds: int) -> None:
        await self.settle([], keys, window_seconds)

    async def settle(self, clear: list[str], hit: list[str], window_seconds: int) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                if clear:
                    pipe.delete(*(self._prefix + key for key in clear))
                for key in hit:
                    pipe.incr(self._prefix + key)
                    pipe.expire(self._prefix + key, window_seconds, nx=True)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc


class MemoryThrottleStore:
    """The same counters in one process (the embedded default)."""

    _MAX_ENTRIES = 100_000

    def __init__(self) -> None:
        self._counters: dict[str, tuple[int, float]] = {}

    async def counts(self, keys: list[str]) -> list[int]:
        now = time.monotonic()
        result = []
        for key in keys:
            count, ends = self._counters.get(key, (0, now))
            result.append(count if ends > now else 0)
        return result

    async def seconds_left(self, key: str) -> int:
        _, ends = self._counters.get(key, (0, 0.0))
        return max(0, int(ends - time.monotonic() + 0.999))

    async def hit(self, keys: list[str], window_seconds: int) -> None:
        now = time.monotonic()
        if len(self._counters) > self._MAX_ENTRIES:
            self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        for key in keys:
            count, ends = self._counters.get(key, (0, now))
            if ends <= now:
                count, ends = 0, now + window_seconds
            self._counters[key] = (count + 1, ends)

    async def settle(self, clear: list[str], hit: list[str], window_seconds: int) -> None:
        for key in clear:
            self._counters.pop(key, None)
        await self.hit(hit, window_seconds)

"""Failure counters for throttling, in Redis (shared by replicas) or in process memory.

A counter counts hits within a window that starts at its first hit; reading returns the
count and the seconds until the window ends, for Retry-After. All keys of one login are
read in one round trip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError

from auth_service.errors import StoreUnavailable

__all__ = ["Counter", "MemoryThrottleStore", "RedisThrottleStore", "ThrottleStore"]


@dataclass(frozen=True)
class Counter:
    """Hits in the current window and the seconds left in it (0 when empty)."""

    count: int
    seconds_left: int


class ThrottleStore(Protocol):
    """Windowed counters keyed by opaque strings."""

    async def read(self, keys: list[str]) -> list[Counter]: ...

    async def hit(self, keys: list[str], window_seconds: int) -> None: ...

    async def clear(self, keys: list[str]) -> None: ...


class RedisThrottleStore:
    """INCR + EXPIRE NX per key; any Redis failure becomes StoreUnavailable."""

    def __init__(self, client: redis_asyncio.Redis, *, prefix: str) -> None:
        self._redis = client
        self._prefix = f"{prefix}throttle:"

    async def read(self, keys: list[str]) -> list[Counter]:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(self._prefix + key)
                    pipe.ttl(self._prefix + key)
                raw = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc
        return [Counter(int(raw[i] or 0), max(0, int(raw[i + 1]))) for i in range(0, len(raw), 2)]

    async def hit(self, keys: list[str], window_seconds: int) -> None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.incr(self._prefix + key)
                    pipe.expire(self._prefix + key, window_seconds, nx=True)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc

    async def clear(self, keys: list[str]) -> None:
        try:
            await self._redis.delete(*(self._prefix + key for key in keys))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc


class MemoryThrottleStore:
    """The same counters in one process (the embedded default)."""

    _MAX_ENTRIES = 100_000

    def __init__(self) -> None:
        self._counters: dict[str, tuple[int, float]] = {}

    async def read(self, keys: list[str]) -> list[Counter]:
        now = time.monotonic()
        result = []
        for key in keys:
            count, ends = self._counters.get(key, (0, now))
            live = ends > now
            result.append(Counter(count if live else 0, int(ends - now + 0.999) if live else 0))
        return result

    async def hit(self, keys: list[str], window_seconds: int) -> None:
        now = time.monotonic()
        if len(self._counters) > self._MAX_ENTRIES:
            self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        for key in keys:
            count, ends = self._counters.get(key, (0, now))
            if ends <= now:
                count, ends = 0, now + window_seconds
            self._counters[key] = (count + 1, ends)

    async def clear(self, keys: list[str]) -> None:
        for key in keys:
            self._counters.pop(key, None)

"""Failure counters for throttling, in Redis (shared by replicas) or in process memory.

A counter counts hits within a window that starts at its first hit. An attempt is
reserved before any argon2 work, in one atomic step (a Lua script in Redis; a method
without an `await` in memory): the limits are checked and the counters raised together,
so concurrent attempts can never pass a limit between a read and a write. A reservation
is released again when the guess turns out right or was never tried.

The account counter remembers how much each source (its (account, IP) pair) added to it
in the current window, and a source adds at most its pair limit: one address alone can
never push an account over its own limit, only many addresses together can.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError

from auth_service.errors import StoreUnavailable

__all__ = [
    "LoginCounters",
    "LoginLimits",
    "MemoryThrottleStore",
    "RedisThrottleStore",
    "Reservation",
    "ThrottleStore",
]


@dataclass(frozen=True)
class LoginCounters:
    """The opaque keys one login attempt counts against."""

    pair: str
    account: str
    ip: str
    known: str


@dataclass(frozen=True)
class LoginLimits:
    """Failures allowed per window; a known pair is held only by its own limit."""

    pair: int
    account: int
    ip: int
    window_seconds: int


@dataclass(frozen=True)
class Reservation:
    """A reserved attempt (`retry_after` 0) or a refusal with the seconds to wait."""

    retry_after: int
    counted_on_account: bool = False


class ThrottleStore(Protocol):
    """Atomic check-and-count of throttling counters keyed by opaque strings."""

    async def take(self, key: str, limit: int, window_seconds: int) -> int:
        """Count one hit unless `limit` is reached: 0, else the seconds to wait (>= 1)."""
        ...

    async def reserve_login(self, counters: LoginCounters, limits: LoginLimits) -> Reservation:
        """Check every limit of a login and count it as a failure, atomically."""
        ...

    async def release_login(
        self,
        counters: LoginCounters,
        reservation: Reservation,
        *,
        succeeded: bool,
        known_seconds: int,
    ) -> None:
        """Take a reservation back; on success also clear the pair and mark it known."""
        ...


# KEYS: pair, account, ip, known. ARGV: pair, account and ip limits, window, source.
# Returns {seconds to wait or 0, 1 when the account counter was raised}.
_RESERVE = """
local function wait(key)
  return math.max(redis.call('TTL', key), 1)
end
local pair_limit = tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') >= pair_limit then
  return {wait(KEYS[1]), 0}
end
if redis.call('EXISTS', KEYS[4]) == 0 then
  if tonumber(redis.call('HGET', KEYS[2], 'n') or '0') >= tonumber(ARGV[2]) then
    return {wait(KEYS[2]), 0}
  end
  if tonumber(redis.call('GET', KEYS[3]) or '0') >= tonumber(ARGV[3]) then
    return {wait(KEYS[3]), 0}
  end
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[4], 'NX')
redis.call('INCR', KEYS[3])
redis.call('EXPIRE', KEYS[3], ARGV[4], 'NX')
if tonumber(redis.call('HGET', KEYS[2], ARGV[5]) or '0') >= pair_limit then
  return {0, 0}
end
redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
redis.call('HINCRBY', KEYS[2], 'n', 1)
redis.call('EXPIRE', KEYS[2], ARGV[4], 'NX')
return {0, 1}
"""

# KEYS: pair, account, ip, known. ARGV: source, counted on account, succeeded, known ttl.
# Never goes below zero: a window may have ended while the attempt ran.
_RELEASE = """
local function lower(key)
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
if ARGV[2] == '1' and tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[1], -1)
  redis.call('HINCRBY', KEYS[2], 'n', -1)
end
lower(KEYS[3])
if ARGV[3] == '1' then
  redis.call('DEL', KEYS[1])
  redis.call('INCR', KEYS[4])
  redis.call('EXPIRE', KEYS[4], ARGV[4], 'NX')
else
  lower(KEYS[1])
end
return 0
"""

# KEYS: the counter. ARGV: limit, window.
_TAKE = """
if tonumber(redis.call('GET', KEYS[1]) or '0') >= tonumber(ARGV[1]) then
  return math.max(redis.call('TTL', KEYS[1]), 1)
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2], 'NX')
return 0
"""


class RedisThrottleStore:
    """One Lua script per operation (one round trip); Redis failures become StoreUnavailable."""

    def __init__(self, client: redis_asyncio.Redis, *, prefix: str) -> None:
        self._prefix = f"{prefix}throttle:"
        self._take = client.register_script(_TAKE)
        self._reserve = client.register_script(_RESERVE)
        self._release = client.register_script(_RELEASE)

    def _keys(self, counters: LoginCounters) -> list[str]:
        names = (counters.pair, counters.account, counters.ip, counters.known)
        return [self._prefix + name for name in names]

    async def take(self, key: str, limit: int, window_seconds: int) -> int:
        try:
            wait = await self._take(keys=[self._prefix + key], args=[limit, window_seconds])
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc
        return int(wait)

    async def reserve_login(self, counters: LoginCounters, limits: LoginLimits) -> Reservation:
        args: list[str | int] = [
            limits.pair,
            limits.account,
            limits.ip,
            limits.window_seconds,
            counters.pair,
        ]
        try:
            wait, counted = await self._reserve(keys=self._keys(counters), args=args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc
        return Reservation(int(wait), counted_on_account=int(counted) == 1)

    async def release_login(
        self,
        counters: LoginCounters,
        reservation: Reservation,
        *,
        succeeded: bool,
        known_seconds: int,
    ) -> None:
        args: list[str | int] = [
            counters.pair,
            int(reservation.counted_on_account),
            int(succeeded),
            known_seconds,
        ]
        try:
            await self._release(keys=self._keys(counters), args=args)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Window:
    """A counter within its window; `sources` only for account counters."""

    ends: float
    count: int = 0
    sources: dict[str, int] = field(default_factory=dict)


class MemoryThrottleStore:
    """The same counters in one process (the embedded default).

    No method awaits anything, so each runs to completion on the event loop: that is
    what makes a reservation atomic here. Windows end on the injected clock.
    """

    _MAX_ENTRIES = 100_000

    def __init__(self, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._windows: dict[str, _Window] = {}  # window ends in POSIX seconds
        self._clock = clock

    def _now(self) -> float:
        return self._clock().timestamp()

    def _current(self, key: str, now: float) -> _Window | None:
        window = self._windows.get(key)
        return window if window is not None and window.ends > now else None

    def _count(self, key: str, now: float) -> int:
        window = self._current(key, now)
        return 0 if window is None else window.count

    def _wait(self, key: str, now: float) -> int:
        window = self._current(key, now)
        return max(1, int((window.ends if window else now) - now + 0.999))

    def _raise(self, key: str, now: float, window_seconds: float) -> _Window:
        window = self._current(key, now)
        if window is None:
            if len(self._windows) > self._MAX_ENTRIES:
                self._windows = {k: w for k, w in self._windows.items() if w.ends > now}
            window = self._windows[key] = _Window(ends=now + window_seconds)
        window.count += 1
        return window

    def _lower(self, key: str, now: float) -> None:
        window = self._current(key, now)
        if window is not None and window.count > 0:
            window.count -= 1

    async def take(self, key: str, limit: int, window_seconds: int) -> int:
        now = self._now()
        if self._count(key, now) >= limit:
            return self._wait(key, now)
        self._raise(key, now, window_seconds)
        return 0

    async def reserve_login(self, counters: LoginCounters, limits: LoginLimits) -> Reservation:
        now = self._now()
        if self._count(counters.pair, now) >= limits.pair:
            return Reservation(self._wait(counters.pair, now))
        if self._count(counters.known, now) == 0:
            if self._count(counters.account, now) >= limits.account:
                return Reservation(self._wait(counters.account, now))
            if self._count(counters.ip, now) >= limits.ip:
                return Reservation(self._wait(counters.ip, now))
        self._raise(counters.pair, now, limits.window_seconds)
        self._raise(counters.ip, now, limits.window_seconds)
        account = self._current(counters.account, now)
        if account is not None and account.sources.get(counters.pair, 0) >= limits.pair:
            return Reservation(0)
        account = self._raise(counters.account, now, limits.window_seconds)
        account.sources[counters.pair] = account.sources.get(counters.pair, 0) + 1
        return Reservation(0, counted_on_account=True)

    async def release_login(
        self,
        counters: LoginCounters,
        reservation: Reservation,
        *,
        succeeded: bool,
        known_seconds: int,
    ) -> None:
        now = self._now()
        account = self._current(counters.account, now)
        share = 0 if account is None else account.sources.get(counters.pair, 0)
        if reservation.counted_on_account and account is not None and share > 0:
            account.sources[counters.pair] -= 1
            account.count -= 1
        self._lower(counters.ip, now)
        if succeeded:
            self._windows.pop(counters.pair, None)
            self._raise(counters.known, now, known_seconds)
        else:
            self._lower(counters.pair, now)

"""Failed-login throttling without victim lockout, and registration throttling per IP.

Failures are counted per (account, IP) pair, per account and per IP. A pair that has
logged in successfully before is "known": only its own pair counter can stop it, so an
attacker hammering an account from many addresses slows strangers down but never locks
the owner out of a place they used before, and one address adds at most its pair limit
to an account's counter. Every password check is reserved (checked and counted in one
atomic store operation) before any argon2 work, so concurrency cannot buy extra guesses;
the reservation is released when the password was right or never checked. The account
key is derived from the submitted name whether or not it exists, so throttling looks the
same for real and unknown usernames.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta

from auth_service.errors import TooManyAttempts
from auth_service.security.policy import lookup_key
from auth_service.stores.throttle import LoginCounters, LoginLimits, Reservation, ThrottleStore

__all__ = ["PasswordCheck", "ThrottlePolicy", "Throttler"]


@dataclass(frozen=True)
class ThrottlePolicy:
    """Limits per window; the account limit stays at or below NIST's 100.

    `in_flight_wait` bounds how long a refused attempt waits for this process's own
    unfinished checks of the same pair (they may succeed and free the pair).
    """

    window: timedelta
    pair_limit: int
    account_limit: int
    ip_limit: int
    known_pair_lifetime: timedelta
    registration_limit: int
    registration_window: timedelta
    in_flight_wait: timedelta = timedelta(seconds=5)


@dataclass
class PasswordCheck:
    """Handed to the block of a password check: a right password whose login still needs a
    second factor calls `second_factor_pending`, so it neither clears the pair's failures
    nor makes the pair known (a known pair escapes the account limit, which must keep
    holding guesses of the second factor)."""

    forgive: bool = True

    def second_factor_pending(self) -> None:
        """Release the reservation without forgiving or remembering the pair."""
        self.forgive = False


@dataclass
class _InFlight:
    """This process's unfinished checks of one pair, and an event set when one ends."""

    count: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)


def _digest(*parts: str) -> str:
    # Usernames and addresses never appear in Redis keys in clear.
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:32]


def _account_key(username: str) -> str:
    return lookup_key(username) or username.casefold()


class Throttler:
    """Applies a ThrottlePolicy over a ThrottleStore."""

    def __init__(self, store: ThrottleStore, policy: ThrottlePolicy) -> None:
        self._store = store
        self._policy = policy
        self._limits = LoginLimits(
            pair=policy.pair_limit,
            account=policy.account_limit,
            ip=policy.ip_limit,
            window_seconds=int(policy.window.total_seconds()),
        )
        self._in_flight: dict[str, _InFlight] = {}

    @asynccontextmanager
    async def password_check(
        self, username: str, ip: str | None, *, wrong: type[Exception]
    ) -> AsyncIterator[PasswordCheck]:
        """Reserve one password check for `username` from `ip` around the block.

        Raises TooManyAttempts before the block runs when a limit is reached. Leaving
        the block normally means the password was right: the reservation is released,
        the pair forgiven and remembered as known. Raising `wrong` keeps it counted as
        a failure; any other exception releases it (no password was checked), except
        cancellation, which keeps it (the check may have run).
        """
        account = _account_key(username)
        address = ip or "unknown"
        counters = LoginCounters(
            pair=f"pair:{_digest(account, address)}",
            account=f"account:{_digest(account)}",
            ip=f"ip:{_digest(address)}",
            known=f"known:{_digest(account, address)}",
        )
        reservation = await self._reserve(counters)
        in_flight = self._in_flight.setdefault(counters.pair, _InFlight())
        in_flight.count += 1
        check = PasswordCheck()
        try:
            try:
                yield check
            except wrong:
                raise
            except Exception:
                await self._release(counters, reservation, succeeded=False)
                raise
            await self._release(counters, reservation, succeeded=check.forgive)
        finally:
            self._check_ended(counters.pair, in_flight)

    async def _reserve(self, counters: LoginCounters) -> Reservation:
        """Reserve, waiting while this process's own checks of the pair may still free it.

        Without the wait, more concurrent logins from one place than the pair limit
        would be refused even when every one of them has the right password.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._policy.in_flight_wait.total_seconds()
        while True:
            reservation = await self._store.reserve_login(counters, self._limits)
            if not reservation.retry_after:
                return reservation
            in_flight = self._in_flight.get(counters.pair)
            remaining = deadline - loop.time()
            if in_flight is None or remaining <= 0:
                raise TooManyAttempts(reservation.retry_after)
            with suppress(TimeoutError):
                await asyncio.wait_for(in_flight.ended.wait(), remaining)

    def _check_ended(self, pair: str, in_flight: _InFlight) -> None:
        in_flight.count -= 1
        in_flight.ended.set()  # wakes everyone waiting for this pair to try again
        if in_flight.count == 0:
            self._in_flight.pop(pair, None)
        else:
            in_flight.ended = asyncio.Event()

    async def _release(
        self, counters: LoginCounters, reservation: Reservation, *, succeeded: bool
    ) -> None:
        await self._store.release_login(
            counters,
            reservation,
            succeeded=succeeded,
            known_seconds=int(self._policy.known_pair_lifetime.total_seconds()),
        )

    async def check_registration(self, ip: str | None) -> None:
        """Count a registration attempt from `ip`; TooManyAttempts past the limit."""
        key = f"register:{_digest(ip or 'unknown')}"
        wait = await self._store.take(
            key,
            self._policy.registration_limit,
            int(self._policy.registration_window.total_seconds()),
        )
        if wait:
            raise TooManyAttempts(wait)

    async def take_hit(self, key: str, limit: int, window_seconds: int) -> int:
        """Count one hit on an opaque key (callers digest what they count): 0 if under
        `limit` in the window, else the seconds until the window frees one."""
        return await self._store.take(key, limit, window_seconds)

"""Failed-login throttling without victim lockout, and registration throttling per IP.

Failures are counted per (account, IP) pair, per account and per IP. A pair that has
logged in successfully before is "known": only its own pair counter can stop it, so an
attacker hammering an account from many addresses slows strangers down but never locks
the owner out of a place they used before. Everything is checked before any argon2 work,
and the account key is derived from the submitted name whether or not it exists, so
throttling looks the same for real and unknown usernames.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from auth_service.errors import TooManyAttempts
from auth_service.security.policy import lookup_key
from auth_service.stores.throttle import ThrottleStore

__all__ = ["LoginAttempt", "ThrottlePolicy", "Throttler"]


@dataclass(frozen=True)
class ThrottlePolicy:
    """Limits per window; the account limit stays at or below NIST's 100."""

    window: timedelta
    pair_limit: int
    account_limit: int
    ip_limit: int
    known_pair_lifetime: timedelta
    registration_limit: int
    registration_window: timedelta


@dataclass(frozen=True)
class LoginAttempt:
    """The counter keys of one login, checked before the password and updated after."""

    pair: str
    account: str
    ip: str
    known: str


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

    async def check_login(self, username: str, ip: str | None) -> LoginAttempt:
        """The attempt's keys, or TooManyAttempts with the seconds to wait."""
        account = _account_key(username)
        address = ip or "unknown"
        attempt = LoginAttempt(
            pair=f"pair:{_digest(account, address)}",
            account=f"account:{_digest(account)}",
            ip=f"ip:{_digest(address)}",
            known=f"known:{_digest(account, address)}",
        )
        pair, by_account, by_ip, known = await self._store.counts(
            [attempt.pair, attempt.account, attempt.ip, attempt.known]
        )
        policy = self._policy
        if pair >= policy.pair_limit:
            raise TooManyAttempts(await self._retry_after(attempt.pair))
        if known == 0:
            if by_account >= policy.account_limit:
                raise TooManyAttempts(await self._retry_after(attempt.account))
            if by_ip >= policy.ip_limit:
                raise TooManyAttempts(await self._retry_after(attempt.ip))
        return attempt

    async def _retry_after(self, key: str) -> int:
        # At least a second: the window may have ended since the counts were read.
        return max(1, await self._store.seconds_left(key))

    async def login_failed(self, attempt: LoginAttempt) -> None:
        """Count a wrong password or unknown user against the pair, account and IP."""
        window = int(self._policy.window.total_seconds())
        await self._store.hit([attempt.pair, attempt.account, attempt.ip], window)

    async def login_succeeded(self, attempt: LoginAttempt) -> None:
        """Forgive the pair and remember it as a place the owner logs in from."""
        await self._store.settle(
            [attempt.pair], [attempt.known], int(self._policy.known_pair_lifetime.total_seconds())
        )

    async def check_registration(self, ip: str | None) -> None:
        """Count a registration attempt from `ip`; TooManyAttempts past the limit."""
        key = f"register:{_digest(ip or 'unknown')}"
        (count,) = await self._store.counts([key])
        if count >= self._policy.registration_limit:
            raise TooManyAttempts(await self._retry_after(key))
        await self._store.hit([key], int(self._policy.registration_window.total_seconds()))

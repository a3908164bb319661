"""Revocation state in front of SQL: denylisted token ids, revoked sessions, user not-before.

Two implementations of one small Protocol: Redis (shared by every replica) and an
in-process dict (the embedded default). Every entry expires when the access tokens it
could affect have expired. An "epoch" marker is written after the store was seeded from
SQL; when it is missing (Redis flushed or restarted, or a new process) the caller reseeds
before trusting a negative answer.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError

from auth_service.errors import StoreUnavailable
from auth_service.stores.coalesced import CoalescedMget

__all__ = ["MemoryStore", "RedisStore", "RevocationStatus", "RevocationStore", "SeedData"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RevocationStatus:
    """Everything one access-token check needs, read in one round trip."""

    seeded: bool
    token_revoked: bool
    session_revoked: bool
    user_not_before: int | None
    # Which outside change the store has seen last (in-process store; 0 for Redis): a
    # reseed reports the generation its SQL read started at (SeedData.generation).
    generation: int = 0


@dataclass
class SeedData:
    """Entries rebuilt from SQL: (id, ttl seconds) and (user id, not-before, ttl seconds)."""

    tokens: list[tuple[str, int]] = field(default_factory=list)
    sessions: list[tuple[str, int]] = field(default_factory=list)
    users: list[tuple[str, int, int]] = field(default_factory=list)
    generation: int = 0


class RevocationStore(Protocol):
    """Fast, TTL-bound revocation state shared by every replica."""

    async def status(self, *, token_id: str, session_id: str, user_id: str) -> RevocationStatus:
        """Read the epoch marker and the three denylist entries of one token at once."""
        ...

    async def revoke_token(self, token_id: str, ttl_seconds: int) -> None: ...

    async def revoke_sessions(self, session_ids: list[str], ttl_seconds: int) -> None: ...

    async def set_user_not_before(
        self, user_id: str, not_before: int, ttl_seconds: int
    ) -> None: ...

    async def seed(self, data: SeedData) -> None:
        """Write every entry, then the epoch marker."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


class _Keys:
    def __init__(self, prefix: str) -> None:
        self.epoch = f"{prefix}epoch"
        self._prefix = prefix

    def token(self, token_id: str) -> str:
        return f"{self._prefix}jti:{token_id}"

    def session(self, session_id: str) -> str:
        return f"{self._prefix}sid:{session_id}"

    def user(self, user_id: str) -> str:
        return f"{self._prefix}unb:{user_id}"


def _not_before(raw: object) -> int | None:
    return int(str(raw)) if raw is not None else None


class RedisStore:
    """Redis-backed store; any Redis failure becomes StoreUnavailable (fail closed)."""

    def __init__(self, client: redis_asyncio.Redis, *, prefix: str = "auth:") -> None:
        self._redis = client
        self._keys = _Keys(prefix)
        self._reads = CoalescedMget(client.mget)

    async def status(self, *, token_id: str, session_id: str, user_id: str) -> RevocationStatus:
        keys = self._keys
        try:
            # Concurrent checks share one MGET; the epoch is read in the same command.
            epoch, token, session, user = await self._reads.mget(
                [keys.epoch, keys.token(token_id), keys.session(session_id), keys.user(user_id)]
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc
        return RevocationStatus(
            seeded=epoch is not None,
            token_revoked=token is not None,
            session_revoked=session is not None,
            user_not_before=_not_before(user),
        )

    async def revoke_token(self, token_id: str, ttl_seconds: int) -> None:
        await self._write([(self._keys.token(token_id), "1", ttl_seconds)])

    async def revoke_sessions(self, session_ids: list[str], ttl_seconds: int) -> None:
        await self._write([(self._keys.session(sid), "1", ttl_seconds) for sid in session_ids])

    async def set_user_not_before(self, user_id: str, not_before: int, ttl_seconds: int) -> None:
        await self._write([(self._keys.user(user_id), str(not_before), ttl_seconds)])

    async def seed(self, data: SeedData) -> None:
        entries = [(self._keys.token(jti), "1", ttl) for jti, ttl in data.tokens]
        entries += [(self._keys.session(sid), "1", ttl) for sid, ttl in data.sessions]
        entries += [(self._keys.user(uid), str(nbf), ttl) for uid, nbf, ttl in data.users]
        await self._write(entries)
        try:
            await self._redis.set(self._keys.epoch, secrets.token_hex(8))
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc

    async def warn_if_evicting(self) -> None:
        """Log loudly when Redis may evict keys: an evicted denylist entry revives a token."""
        try:
            policy = (await self._redis.config_get("maxmemory-policy")).get("maxmemory-policy")
        except (RedisError, OSError):
            return  # unreachable or CONFIG disabled: nothing to learn now
        if policy not in (None, "noeviction"):
            log.warning(
                "Redis maxmemory-policy is %s: set it to noeviction, or revoked tokens may "
                "be accepted again until they expire",
                policy,
            )

    async def ping(self) -> None:
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc

    async def close(self) -> None:
        return None  # the shared client is closed by its owner

    async def _write(self, entries: list[tuple[str, str, int]]) -> None:
        if not entries:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, value, ttl in entries:
                    pipe.set(key, value, ex=max(1, ttl))
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc


class MemoryStore:
    """In-process store for the embedded default: one replica, lost (and reseeded) on restart.

    Other processes on the same data dir (the CLI's `users disable`, say) commit to SQL and
    then replace `change_marker`; each status read stats it (~1 µs) and, once it changed,
    reports unseeded so the caller reseeds from SQL before trusting a negative answer.
    """

    def __init__(self, *, change_marker: Path | None = None) -> None:
        self._entries: dict[str, tuple[str, float]] = {}
        self._keys = _Keys("")
        self._marker = change_marker
        self._marker_seen = _stat_marker(change_marker)
        self._generation = 0  # outside changes seen
        self._seeded_generation = -1  # the generation the last seed read SQL at
        self._written = False

    async def status(self, *, token_id: str, session_id: str, user_id: str) -> RevocationStatus:
        if self._marker is not None:
            marker = _stat_marker(self._marker)
            if marker != self._marker_seen:
                self._marker_seen = marker
                self._generation += 1
        keys = self._keys
        return RevocationStatus(
            seeded=self._seeded_generation == self._generation,
            token_revoked=self._get(keys.token(token_id)) is not None,
            session_revoked=self._get(keys.session(session_id)) is not None,
            user_not_before=_not_before(self._get(keys.user(user_id))),
            generation=self._generation,
        )

    async def revoke_token(self, token_id: str, ttl_seconds: int) -> None:
        self._set(self._keys.token(token_id), "1", ttl_seconds)

    async def revoke_sessions(self, session_ids: list[str], ttl_seconds: int) -> None:
        for session_id in session_ids:
            self._set(self._keys.session(session_id), "1", ttl_seconds)

    async def set_user_not_before(self, user_id: str, not_before: int, ttl_seconds: int) -> None:
        self._set(self._keys.user(user_id), str(not_before), ttl_seconds)

    async def seed(self, data: SeedData) -> None:
        for jti, ttl in data.tokens:
            await self.revoke_token(jti, ttl)
        for sid, ttl in data.sessions:
            await self.revoke_sessions([sid], ttl)
        for uid, nbf, ttl in data.users:
            await self.set_user_not_before(uid, nbf, ttl)
        # A change seen while SQL was being read keeps the store unseeded: read again.
        self._seeded_generation = data.generation

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        """Forget everything; if this process revoked anything, tell the others to reseed.

        The use cases commit to SQL before they return, so the marker changes only after
        the revocations can be read back.
        """
        self._entries.clear()
        if self._written and self._marker is not None:
            announce_change(self._marker)

    def _get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        return value

    def _set(self, key: str, value: str, ttl_seconds: int) -> None:
        self._written = True
        if len(self._entries) > 100_000:
            self._purge_expired()
        self._entries[key] = (value, time.monotonic() + max(1, ttl_seconds))

    def _purge_expired(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, expires) in self._entries.items() if expires <= now]:
            del self._entries[key]


def _stat_marker(marker: Path | None) -> tuple[int, int, int] | None:
    """Inode, mtime and size: replacing the file changes the inode even within one tick of
    the file system's coarse clock."""
    if marker is None:
        return None
    try:
        found = os.stat(marker)
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns, found.st_size


def announce_change(marker: Path) -> None:
    """Replace the change marker (atomically): in-process stores watching it reseed."""
    marker.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # the data dir
    staged = marker.with_name(f"{marker.name}.{secrets.token_hex(4)}")
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # owner-only dir content
    with os.fdopen(fd, "w") as out:
        out.write(f"{time.time_ns()} {secrets.token_hex(8)}\n")
    os.replace(staged, marker)

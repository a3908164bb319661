"""Revocation state in front of SQL: denylisted token ids, revoked sessions, user not-before.

Two implementations of one small Protocol: Redis (shared by every replica) and an
in-process dict (the embedded default). Every entry expires when the access tokens it
could affect have expired. SQL is the truth; the store is a cache that may lose
everything at any moment (FLUSHALL, a restart without persistence, another process).

Invariants (what makes "revoked stays revoked" hold through any sequence of flushes):

1. The epoch marker only ever stands over a complete restore. A restore starts with
   `begin_seed` (a ticket: in Redis a key of its own, which any flush deletes), then reads
   SQL, then `seed` writes every entry and the epoch in one script, and only if the ticket
   still exists. A flush can neither split the restore nor slip in after its SQL read.
2. Every revocation is written to the store after its SQL commit (most also before it,
   so an unreachable store fails the call with nothing half-done). That write lands
   after the commit, so a restore whose SQL read missed the commit either finds the entry
   in place when it writes (no flush since its ticket) or is refused (a flush deleted
   its ticket); an entry flushed later takes the epoch with it, and the next restore
   reads SQL after the commit.
3. Writes never weaken an entry: a user's not-before only grows and no TTL shrinks, so
   a restore from an older SQL read cannot undo a newer revocation.

Hence once a revocation's after-commit write has been done, every later check either
finds its entry or finds no epoch and restores from SQL (which holds it) before
answering. (Reuse detection queues that write in-process while the store is down; see
services/revocation.deny_sessions_eventually.)
"""

from __future__ import annotations

import hashlib
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

# A restore that takes longer than this between its ticket and its write is refused (and
# retried): its ticket has expired.
SEED_TICKET_SECONDS = 300
# Where the primary has a replica, a revocation write returns once one replica has it too
# (WAIT), or after this bound (then it is logged: SQL still holds it, a reseed restores it).
REPLICA_ACK_TIMEOUT_MS = 250
# How long a count of the primary's connected replicas (INFO replication) is trusted.
REPLICA_COUNT_TTL_SECONDS = 5.0


@dataclass(frozen=True)
class RevocationStatus:
    """Everything one access-token check needs, read in one round trip."""

    seeded: bool
    token_revoked: bool
    session_revoked: bool
    user_not_before: int | None


@dataclass
class SeedData:
    """Entries rebuilt from SQL: (id, ttl seconds) and (user id, not-before, ttl seconds).

    `ticket` is what `begin_seed` returned before SQL was read.
    """

    tokens: list[tuple[str, int]] = field(default_factory=list)
    sessions: list[tuple[str, int]] = field(default_factory=list)
    users: list[tuple[str, int, int]] = field(default_factory=list)
    ticket: str = ""


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

    async def use_once(self, key: str, ttl_seconds: int) -> bool:
        """Remember `key` for `ttl_seconds`; False if it was already remembered (a replay)."""
        ...

    async def begin_seed(self) -> str:
        """Start a restore before reading SQL: a ticket that any later loss invalidates."""
        ...

    async def seed(self, data: SeedData) -> bool:
        """Write every entry and the epoch at once if the ticket still holds; else False."""
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

    def seeding(self, ticket: str) -> str:
        return f"{self._prefix}seeding:{ticket}"

    def once(self, key: str) -> str:
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return f"{self._prefix}once:{digest}"


def _not_before(raw: object) -> int | None:
    return int(str(raw)) if raw is not None else None


# Entries as (key, value, ttl seconds, mode); mode "max" keeps the larger number.
_Entry = tuple[str, str, int, str]

# KEYS: the entries; ARGV: value, ttl seconds, mode per entry. Never lowers a not-before
# ("max") and never shortens a TTL, so a late or repeated write cannot weaken an entry.
_WRITE_LUA = """
local function put(key, value, ttl, mode)
  local current = redis.call('GET', key)
  if mode == 'max' and current and tonumber(current) and tonumber(current) > tonumber(value) then
    value = current
  end
  local ms = ttl * 1000
  local left = redis.call('PTTL', key)
  if left > ms then ms = left end
  redis.call('SET', key, value, 'PX', ms)
end
"""

_REVOKE_SCRIPT = (
    _WRITE_LUA
    + """
for i, key in ipairs(KEYS) do
  put(key, ARGV[3 * i - 2], tonumber(ARGV[3 * i - 1]), ARGV[3 * i])
end
return 1
"""
)

# KEYS[1]: the ticket, KEYS[2]: the epoch, then the entries; ARGV[1]: the epoch value,
# then value, ttl, mode per entry. Nothing is written unless the ticket survived.
_SEED_SCRIPT = (
    _WRITE_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 3, #KEYS do
  local at = 3 * (i - 3) + 2
  put(KEYS[i], ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2])
end
redis.call('SET', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return 1
"""
)


def _flatten(entries: list[_Entry]) -> tuple[list[str], list[str | int]]:
    keys = [key for key, _, _, _ in entries]
    args: list[str | int] = []
    for _, value, ttl, mode in entries:
        args += [value, max(1, ttl), mode]
    return keys, args


class RedisStore:
    """Redis-backed store; any Redis failure becomes StoreUnavailable (fail closed)."""

    def __init__(self, client: redis_asyncio.Redis, *, prefix: str = "auth:") -> None:
        self._redis = client
        self._keys = _Keys(prefix)
        self._reads = CoalescedMget(client.mget)
        self._revoke = client.register_script(_REVOKE_SCRIPT)
        self._seed = client.register_script(_SEED_SCRIPT)
        self._replicas = 0
        self._replicas_checked_at = -REPLICA_COUNT_TTL_SECONDS

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
        await self._write([(self._keys.token(token_id), "1", ttl_seconds, "set")])

    async def revoke_sessions(self, session_ids: list[str], ttl_seconds: int) -> None:
        await self._write(
            [(self._keys.session(sid), "1", ttl_seconds, "set") for sid in session_ids]
        )

    async def set_user_not_before(self, user_id: str, not_before: int, ttl_seconds: int) -> None:
        await self._write([(self._keys.user(user_id), str(not_before), ttl_seconds, "max")])

    async def use_once(self, key: str, ttl_seconds: int) -> bool:
        try:
            fresh = await self._redis.set(
                self._keys.once(key), "1", nx=True, ex=max(1, ttl_seconds)
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc
        return bool(fresh)

    async def begin_seed(self) -> str:
        ticket = secrets.token_hex(16)
        try:
            await self._redis.set(self._keys.seeding(ticket), "1", ex=SEED_TICKET_SECONDS)
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc
        return ticket

    async def seed(self, data: SeedData) -> bool:
        entries = _seed_entries(self._keys, data)
        keys, args = _flatten(entries)
        try:
            written = await self._seed(
                keys=[self._keys.seeding(data.ticket), self._keys.epoch, *keys],
                args=[secrets.token_hex(8), *args],
            )
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc
        return bool(written)

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

    async def _write(self, entries: list[_Entry]) -> None:
        if not entries:
            return
        keys, args = _flatten(entries)
        try:
            await self._revoke(keys=keys, args=args)
            if await self._replica_count() > 0:
                await self._replicated()
        except (RedisError, OSError) as exc:
            raise StoreUnavailable from exc

    async def _replica_count(self) -> int:
        """The primary's connected replicas, read at most every REPLICA_COUNT_TTL_SECONDS."""
        now = time.monotonic()
        if now - self._replicas_checked_at >= REPLICA_COUNT_TTL_SECONDS:
            info = await self._redis.info("replication")
            self._replicas = int(info.get("connected_slaves", 0))
            self._replicas_checked_at = now
        return self._replicas

    async def _replicated(self) -> None:
        """Wait until a replica has the write (a failover then most likely keeps it)."""
        acked = await self._redis.wait(1, REPLICA_ACK_TIMEOUT_MS)
        if acked < 1:
            log.warning(
                "a revocation reached no Redis replica within %d ms; a failover now could "
                "lose it until the next reseed from SQL",
                REPLICA_ACK_TIMEOUT_MS,
            )


def _seed_entries(keys: _Keys, data: SeedData) -> list[_Entry]:
    entries = [(keys.token(jti), "1", ttl, "set") for jti, ttl in data.tokens]
    entries += [(keys.session(sid), "1", ttl, "set") for sid, ttl in data.sessions]
    entries += [(keys.user(uid), str(nbf), ttl, "max") for uid, nbf, ttl in data.users]
    return entries


class MemoryStore:
    """In-process store for the embedded default: one replica, lost (and reseeded) on restart.

    Other processes on the same data dir (the CLI's `users disable`, say) commit to SQL and
    then replace `change_marker`; each status read stats it (~1 µs) and, once it changed,
    reports unseeded so the caller reseeds from SQL before trusting a negative answer. A
    restore's ticket is the count of changes seen when it began: a change announced while
    it read SQL keeps the store unseeded.
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
        self._look_for_changes()
        keys = self._keys
        return RevocationStatus(
            seeded=self._seeded_generation == self._generation,
            token_revoked=self._get(keys.token(token_id)) is not None,
            session_revoked=self._get(keys.session(session_id)) is not None,
            user_not_before=_not_before(self._get(keys.user(user_id))),
        )

    async def revoke_token(self, token_id: str, ttl_seconds: int) -> None:
        self._put((self._keys.token(token_id), "1", ttl_seconds, "set"))

    async def revoke_sessions(self, session_ids: list[str], ttl_seconds: int) -> None:
        for session_id in session_ids:
            self._put((self._keys.session(session_id), "1", ttl_seconds, "set"))

    async def set_user_not_before(self, user_id: str, not_before: int, ttl_seconds: int) -> None:
        self._put((self._keys.user(user_id), str(not_before), ttl_seconds, "max"))

    async def use_once(self, key: str, ttl_seconds: int) -> bool:
        once = self._keys.once(key)
        if self._get(once) is not None:
            return False
        if len(self._entries) > 100_000:
            self._purge_expired()
        # Not _put: a used jti is no revocation, so no other process needs to reseed.
        self._entries[once] = ("1", time.monotonic() + max(1, ttl_seconds))
        return True

    async def begin_seed(self) -> str:
        self._look_for_changes()
        return str(self._generation)

    async def seed(self, data: SeedData) -> bool:
        for entry in _seed_entries(self._keys, data):
            self._put(entry)
        self._look_for_changes()
        if data.ticket != str(self._generation):
            return False  # a change was announced while SQL was read: read again
        self._seeded_generation = self._generation
        return True

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

    def _look_for_changes(self) -> None:
        if self._marker is not None:
            marker = _stat_marker(self._marker)
            if marker != self._marker_seen:
                self._marker_seen = marker
                self._generation += 1

    def _get(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= time.monotonic():
            del self._entries[key]
            return None
        return value

    def _put(self, entry: _Entry) -> None:
        """Set an entry; like the Redis script, never lower a not-before or shorten a TTL."""
        key, value, ttl_seconds, mode = entry
        self._written = True
        if len(self._entries) > 100_000:
            self._purge_expired()
        expires = time.monotonic() + max(1, ttl_seconds)
        current = self._entries.get(key)
        if current is not None and current[1] > time.monotonic():
            if mode == "max" and float(current[0]) > float(value):
                value = current[0]
            expires = max(expires, current[1])
        self._entries[key] = (value, expires)

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

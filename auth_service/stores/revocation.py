"""Revocation state in front of SQL: denylisted token ids, revoked sessions, user not-before.

Two implementations of one small Protocol: Redis (shared by every replica) and an
in-process dict (the embedded default). Every entry expires when the access tokens it
could affect have expired. The invariants that keep a revoked token revoked through any
sequence of flushes, and the rules the use cases follow, are stated once in
services/revocation.py; this module is the store's half of them: the seed ticket and the
one-script seed (1), the write that never weakens an entry (3), the MemoryStore's
change marker and generations (4, 5), and the generation mirror (7, 8).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError

from auth_service.errors import StoreUnavailable
from auth_service.stores.coalesced import CoalescedMget

__all__ = [
    "MemoryStore",
    "Mirror",
    "RedisStore",
    "RevocationStatus",
    "RevocationStore",
    "SeedData",
]

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

    `ticket` is what `begin_seed` returned before SQL was read; `generation` is SQL's
    revocation generation read before the revocations were.
    """

    tokens: list[tuple[str, int]] = field(default_factory=list)
    sessions: list[tuple[str, int]] = field(default_factory=list)
    users: list[tuple[str, int, int]] = field(default_factory=list)
    ticket: str = ""
    generation: int = 0


@dataclass(frozen=True)
class Mirror:
    """What an after-commit write tells the store: SQL's revocation generation read after
    the commit, raised to only from at least `floor` (invariant 5)."""

    generation: int
    floor: int


class RevocationStore(Protocol):
    """Fast, TTL-bound revocation state shared by every replica."""

    # Set on every failure to reach the store: the generation check runs at once.
    errors: asyncio.Event

    async def status(self, *, token_id: str, session_id: str, user_id: str) -> RevocationStatus:
        """Read the epoch marker and the three denylist entries of one token at once."""
        ...

    async def revoke_token(
        self, token_id: str, ttl_seconds: int, mirror: Mirror | None = None
    ) -> None: ...

    async def revoke_sessions(
        self, session_ids: list[str], ttl_seconds: int, mirror: Mirror | None = None
    ) -> None: ...

    async def set_user_not_before(
        self, user_id: str, not_before: int, ttl_seconds: int, mirror: Mirror | None = None
    ) -> None: ...

    async def generation(self) -> int | None:
        """The mirror of SQL's revocation generation (None: never written)."""
        ...

    async def forget(self) -> None:
        """Lost writes were detected: unseeded from now on, restores begun before refused."""

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
    """The store's key names under `prefix`: `revoked-token:<jti>`, `revoked-session:<sid>`,
    `user-not-before:<user id>` (the lowest credential version still valid), `epoch`, and
    `seeding:<ticket>`.

    Releases up to 0.1.x named the entries `jti:`, `sid:` and `unb:` (LEGACY_NAMES). While
    a rolling upgrade runs both releases against one Redis, each must see the other's
    revocations, so RedisStore writes every entry under both names and reads both; the
    epoch and the tickets kept their names, so both releases share one seed. Drop
    LEGACY_NAMES in the release after: entries then live only under the new names (this
    release wrote them there too), and the legacy ones expire with their TTLs.
    """

    def __init__(self, prefix: str) -> None:
        self.epoch = f"{prefix}epoch"
        self.generation = f"{prefix}generation"
        self.losses = f"{prefix}losses"
        self._prefix = prefix

    def token(self, token_id: str) -> str:
        return f"{self._prefix}revoked-token:{token_id}"

    def session(self, session_id: str) -> str:
        return f"{self._prefix}revoked-session:{session_id}"

    def user(self, user_id: str) -> str:
        return f"{self._prefix}user-not-before:{user_id}"

    def seeding(self, ticket: str) -> str:
        return f"{self._prefix}seeding:{ticket}"

    def once(self, key: str) -> str:
        """A single-use marker (a client assertion's jti, say), named by its digest."""
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return f"{self._prefix}used-once:{digest}"

    def legacy(self, key: str) -> str:
        """The name an entry had up to release 0.1.x (`jti:`, `sid:`, `unb:`)."""
        kind, _, rest = key[len(self._prefix) :].partition(":")
        return f"{self._prefix}{LEGACY_NAMES[kind]}:{rest}"


# The entry names of releases up to 0.1.x, read and written too during the transition.
LEGACY_NAMES = {"revoked-token": "jti", "revoked-session": "sid", "user-not-before": "unb"}


def _with_legacy(keys: _Keys, entries: list[_Entry]) -> list[_Entry]:
    """Every entry under its name and under its legacy name (see _Keys)."""
    return entries + [(keys.legacy(key), value, ttl, mode) for key, value, ttl, mode in entries]


def _newer(current: object, legacy: object) -> object:
    """A not-before read under both names: the higher (writes never lower it)."""
    if current is None or legacy is None:
        return current if legacy is None else legacy
    return max(int(str(current)), int(str(legacy)))


def _utc_now() -> datetime:
    return datetime.now(UTC)


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

# Raise the mirror KEYS[1] to ARGV[1] if it is at least ARGV[2] (invariant 5).
_MIRROR_LUA = """
local function mirror(key, generation, floor)
  if generation == '' then return end
  local current = tonumber(redis.call('GET', key) or '-1')
  if current >= tonumber(floor) and current < tonumber(generation) then
    redis.call('SET', key, generation)
  end
end
"""

# KEYS[1]: the mirror, then the entries; ARGV[1], ARGV[2]: generation and floor ('' for
# none), then value, ttl, mode per entry. The mirror moves after the entries.
_REVOKE_SCRIPT = (
    _WRITE_LUA
    + _MIRROR_LUA
    + """
for i = 2, #KEYS do
  local at = 3 * (i - 2) + 3
  put(KEYS[i], ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2])
end
mirror(KEYS[1], ARGV[1], ARGV[2])
return 1
"""
)

# KEYS[1]: a new ticket, KEYS[2]: the loss count. The ticket holds the count it began at.
_BEGIN_SEED_SCRIPT = """
redis.call('SET', KEYS[1], redis.call('GET', KEYS[2]) or '0', 'EX', tonumber(ARGV[1]))
return 1
"""

# KEYS[1]: the epoch, KEYS[2]: the loss count: unseeded, and every ticket out refused.
_FORGET_SCRIPT = """
redis.call('DEL', KEYS[1])
redis.call('INCR', KEYS[2])
return 1
"""

# KEYS[1]: the ticket, KEYS[2]: the epoch, KEYS[3]: the mirror, KEYS[4]: the loss count,
# then the entries; ARGV[1]: the epoch value, ARGV[2]: the generation, then value, ttl,
# mode per entry. Nothing is written unless the ticket survived, with no loss since.
_SEED_SCRIPT = (
    _WRITE_LUA
    + """
local ticket = redis.call('GET', KEYS[1])
if not ticket or ticket ~= (redis.call('GET', KEYS[4]) or '0') then return 0 end
for i = 5, #KEYS do
  local at = 3 * (i - 5) + 3
  put(KEYS[i], ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2])
end
local current = tonumber(redis.call('GET', KEYS[3]) or '-1')
if current < tonumber(ARGV[2]) then redis.call('SET', KEYS[3], ARGV[2]) end
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
        self._begin_seed = client.register_script(_BEGIN_SEED_SCRIPT)
        self._forget = client.register_script(_FORGET_SCRIPT)
        self._seed = client.register_script(_SEED_SCRIPT)
        self.errors = asyncio.Event()
        self._replicas = 0
        self._replicas_checked_at = -REPLICA_COUNT_TTL_SECONDS

    async def status(self, *, token_id: str, session_id: str, user_id: str) -> RevocationStatus:
        keys = self._keys
        try:
            # Concurrent checks share one MGET; the epoch is read in the same command.
            token, session, user = (
                keys.token(token_id),
                keys.session(session_id),
                keys.user(user_id),
            )
            epoch, token, session, user, old_token, old_session, old_user = await self._reads.mget(
                [
                    keys.epoch,
                    token,
                    session,
                    user,
                    keys.legacy(token),
                    keys.legacy(session),
                    keys.legacy(user),
                ]
            )
        except (RedisError, OSError) as exc:
            raise self._unavailable() from exc
        return RevocationStatus(
            seeded=epoch is not None,
            token_revoked=token is not None or old_token is not None,
            session_revoked=session is not None or old_session is not None,
            user_not_before=_not_before(_newer(user, old_user)),
        )

    async def revoke_token(
        self, token_id: str, ttl_seconds: int, mirror: Mirror | None = None
    ) -> None:
        await self._write([(self._keys.token(token_id), "1", ttl_seconds, "set")], mirror)

    async def revoke_sessions(
        self, session_ids: list[str], ttl_seconds: int, mirror: Mirror | None = None
    ) -> None:
        entries = [(self._keys.session(sid), "1", ttl_seconds, "set") for sid in session_ids]
        await self._write(entries, mirror)

    async def set_user_not_before(
        self, user_id: str, not_before: int, ttl_seconds: int, mirror: Mirror | None = None
    ) -> None:
        key = self._keys.user(user_id)
        await self._write([(key, str(not_before), ttl_seconds, "max")], mirror)

    async def generation(self) -> int | None:
        try:
            raw = await self._redis.get(self._keys.generation)
        except (RedisError, OSError) as exc:
            raise self._unavailable() from exc
        return None if raw is None else int(raw)

    async def forget(self) -> None:
        try:
            await self._forget(keys=[self._keys.epoch, self._keys.losses])
        except (RedisError, OSError) as exc:
            raise self._unavailable() from exc

    async def use_once(self, key: str, ttl_seconds: int) -> bool:
        try:
            fresh = await self._redis.set(
                self._keys.once(key), "1", nx=True, ex=max(1, ttl_seconds)
            )
        except (RedisError, OSError) as exc:
            raise self._unavailable() from exc
        return bool(fresh)

    async def begin_seed(self) -> str:
        ticket = secrets.token_hex(16)
        try:
            await self._begin_seed(
                keys=[self._keys.seeding(ticket), self._keys.losses], args=[SEED_TICKET_SECONDS]
            )
        except (RedisError, OSError) as exc:
            raise self._unavailable() from exc
        return ticket

    async def seed(self, data: SeedData) -> bool:
        entries = _with_legacy(self._keys, _seed_entries(self._keys, data))
        keys, args = _flatten(entries)
        k = self._keys
        try:
            written = await self._seed(
                keys=[k.seeding(data.ticket), k.epoch, k.generation, k.losses, *keys],
                args=[secrets.token_hex(8), data.generation, *args],
            )
        except (RedisError, OSError) as exc:
            raise self._unavailable() from exc
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
            raise self._unavailable() from exc

    async def close(self) -> None:
        return None  # the shared client is closed by its owner

    def _unavailable(self) -> StoreUnavailable:
        self.errors.set()
        return StoreUnavailable()

    async def _write(self, entries: list[_Entry], mirror: Mirror | None) -> None:
        if not entries:
            return
        keys, args = _flatten(_with_legacy(self._keys, entries))
        moved: list[str | int] = ["", ""] if mirror is None else [mirror.generation, mirror.floor]
        try:
            await self._revoke(keys=[self._keys.generation, *keys], args=[*moved, *args])
            if await self._replica_count() > 0:
                await self._replicated()
        except (RedisError, OSError) as exc:
            raise self._unavailable() from exc

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

    Each status read stats `change_marker` (one stat call) and, once another process
    replaced it, reports unseeded; a restore's ticket is the generation (changes seen) it
    began at (services/revocation.py, invariants 4 and 5). Entries expire on the injected
    clock, so tests advance time instead of sleeping.
    """

    def __init__(
        self, *, change_marker: Path | None = None, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self._entries: dict[str, tuple[str, float]] = {}  # value, expiry (POSIX seconds)
        self._clock = clock
        self._keys = _Keys("")
        self._marker = change_marker
        self._marker_seen = _stat_marker(change_marker)
        self._generation = 0  # outside changes seen
        self._seeded_generation = -1  # the generation the last seed read SQL at
        self._written = False
        self._mirror: int | None = None  # SQL's revocation generation, as Redis mirrors it
        self.errors = asyncio.Event()  # never set: nothing to reach

    async def status(self, *, token_id: str, session_id: str, user_id: str) -> RevocationStatus:
        self._look_for_changes()
        keys, now = self._keys, self._now()
        return RevocationStatus(
            seeded=self._seeded_generation == self._generation,
            token_revoked=self._get(keys.token(token_id), now) is not None,
            session_revoked=self._get(keys.session(session_id), now) is not None,
            user_not_before=_not_before(self._get(keys.user(user_id), now)),
        )

    async def revoke_token(
        self, token_id: str, ttl_seconds: int, mirror: Mirror | None = None
    ) -> None:
        self._put((self._keys.token(token_id), "1", ttl_seconds, "set"))
        self._move_mirror(mirror)

    async def revoke_sessions(
        self, session_ids: list[str], ttl_seconds: int, mirror: Mirror | None = None
    ) -> None:
        for session_id in session_ids:
            self._put((self._keys.session(session_id), "1", ttl_seconds, "set"))
        self._move_mirror(mirror)

    async def set_user_not_before(
        self, user_id: str, not_before: int, ttl_seconds: int, mirror: Mirror | None = None
    ) -> None:
        self._put((self._keys.user(user_id), str(not_before), ttl_seconds, "max"))
        self._move_mirror(mirror)

    async def generation(self) -> int | None:
        return self._mirror

    async def forget(self) -> None:
        self._generation += 1  # unseeded, and a restore begun before is refused

    def _move_mirror(self, mirror: Mirror | None) -> None:
        current = -1 if self._mirror is None else self._mirror
        if mirror is not None and mirror.floor <= current < mirror.generation:
            self._mirror = mirror.generation

    async def use_once(self, key: str, ttl_seconds: int) -> bool:
        once, now = self._keys.once(key), self._now()
        if self._get(once, now) is not None:
            return False
        if len(self._entries) > 100_000:
            self._purge_expired(now)
        # Not _put: a used jti is no revocation, so no other process needs to reseed.
        self._entries[once] = ("1", now + max(1, ttl_seconds))
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
        self._mirror = max(data.generation, -1 if self._mirror is None else self._mirror)
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

    def _now(self) -> float:
        """The injected clock in seconds: entries expire when the tokens they cover do."""
        return self._clock().timestamp()

    def _get(self, key: str, now: float) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires = entry
        if expires <= now:
            del self._entries[key]
            return None
        return value

    def _put(self, entry: _Entry) -> None:
        """Set an entry; like the Redis script, never lower a not-before or shorten a TTL."""
        key, value, ttl_seconds, mode = entry
        self._written = True
        now = self._now()
        if len(self._entries) > 100_000:
            self._purge_expired(now)
        expires = now + max(1, ttl_seconds)
        current = self._entries.get(key)
        if current is not None and current[1] > now:
            if mode == "max" and float(current[0]) > float(value):
                value = current[0]
            expires = max(expires, current[1])
        self._entries[key] = (value, expires)

    def _purge_expired(self, now: float) -> None:
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

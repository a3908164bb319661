"""A rotating set of signing keys kept in one directory that every replica mounts.

`keyset.json` lists each key's state; its PEM sits beside it (mode 0600):
- `next`: published in the JWKS, not signing yet, so verifiers have cached it before use;
- `active`: the one key that signs with its algorithm (exactly one per algorithm: access
  tokens use the configured one, ID tokens RS256 by default or ES256 per client);
- `retiring`: no longer signs, still published until every token it signed has expired.
Changes take a file lock and replace `keyset.json` atomically; replicas notice the new
modification time and reload.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from auth_service.security.keys import (
    KeyConfigurationError,
    SigningKey,
    generate_private_key_pem,
    load_signing_key,
    write_private_file,
)

__all__ = ["KeyDirectory", "KeyRecord", "KeyRing"]

NEXT, ACTIVE, RETIRING = "next", "active", "retiring"


@dataclass(frozen=True)
class KeyRecord:
    """One key's entry in keyset.json (times are ISO 8601 UTC)."""

    kid: str
    algorithm: str
    state: str
    created_at: str
    activated_at: str | None = None
    publish_until: str | None = None


@dataclass(frozen=True)
class KeyRing:
    """The key that signs access tokens, every key that verifies (and is published), and
    the active key of each algorithm (ID tokens pick theirs by algorithm)."""

    active: SigningKey
    published: tuple[SigningKey, ...]
    signers: tuple[SigningKey, ...] = ()

    def signer(self, algorithm: str) -> SigningKey | None:
        """The active key of `algorithm`, if the ring has one."""
        for key in (self.active, *self.signers):
            if key.algorithm == algorithm:
                return key
        return None


class KeyDirectory:
    """Reads and changes a key directory; safe against concurrent replicas and CLIs."""

    def __init__(self, path: Path, clock: Callable[[], datetime]) -> None:
        self.path = path
        self._clock = clock
        self._manifest = path / "keyset.json"

    def version(self) -> int:
        """Changes whenever keyset.json is replaced (0 when it does not exist)."""
        try:
            return self._manifest.stat().st_mtime_ns
        except FileNotFoundError:
            return 0

    def records(self) -> list[KeyRecord]:
        """Every key listed, in file order."""
        if not self._manifest.exists():
            return []
        raw = json.loads(self._manifest.read_text(encoding="utf-8"))
        return [KeyRecord(**entry) for entry in raw["keys"]]

    def load(self, algorithm: str | None = None) -> KeyRing:
        """Parse every listed key once; the active key of `algorithm` signs access tokens
        (without one named, the only active key), all of them verify."""
        records = self.records()
        keys = {
            r.kid: load_signing_key(self._pem(r.kid).read_bytes(), r.algorithm) for r in records
        }
        active = [r for r in records if r.state == ACTIVE]
        algorithms = [r.algorithm for r in active]
        if len(set(algorithms)) != len(algorithms) or not active:
            raise KeyConfigurationError(
                f"{self._manifest} must list exactly one active key per algorithm "
                "(run `auth-service keys generate`)"
            )
        if algorithm is None:
            if len(active) != 1:
                raise KeyConfigurationError(f"{self._manifest} lists several active keys")
            algorithm = active[0].algorithm
        main = [r for r in active if r.algorithm == algorithm]
        if not main:
            raise KeyConfigurationError(
                f"{self._manifest} has no active {algorithm} key "
                f"(run `auth-service keys generate --algorithm {algorithm}`)"
            )
        return KeyRing(
            active=keys[main[0].kid],
            published=tuple(keys.values()),
            signers=tuple(keys[r.kid] for r in active if r.algorithm != algorithm),
        )

    def generate(self, algorithm: str) -> KeyRecord:
        """Add a key: active if there is none yet, otherwise published as `next`."""
        with self._locked() as records:
            has_active = any(r.state == ACTIVE and r.algorithm == algorithm for r in records)
            record = self._new_key(algorithm, state=NEXT if has_active else ACTIVE)
            records.append(record)
        return record

    def import_key(self, pem: bytes, algorithm: str) -> KeyRecord:
        """Add an existing PEM: active if there is none yet (so moving from a key file keeps
        every live token verifiable and signing unchanged), otherwise published as `next`."""
        kid = load_signing_key(pem, algorithm).kid  # refuses keys that cannot sign
        with self._locked() as records:
            if any(r.kid == kid for r in records):
                raise KeyConfigurationError(f"key {kid} is already in {self.path}")
            has_active = any(r.state == ACTIVE and r.algorithm == algorithm for r in records)
            state = NEXT if has_active else ACTIVE
            write_private_file(self._pem(kid), pem)
            now = self._clock().isoformat()
            record = KeyRecord(kid, algorithm, state, now, now if state == ACTIVE else None)
            records.append(record)
        return record

    def rotate(
        self,
        algorithm: str,
        *,
        published_for: timedelta,
        tokens_live_for: timedelta,
        force: bool = False,
    ) -> KeyRecord:
        """Make the oldest `next` key active once verifiers can have cached it.

        The old active key keeps being published until its last token expires; a new
        `next` key is published right away for the following rotation.
        """
        now = self._clock()
        with self._locked() as records:
            candidates = [r for r in records if r.state == NEXT and r.algorithm == algorithm]
            if not candidates:
                raise KeyConfigurationError("no next key: run `auth-service keys generate` first")
            promoted = candidates[0]
            waited = now - datetime.fromisoformat(promoted.created_at)
            if waited < published_for and not force:
                raise KeyConfigurationError(
                    f"key {promoted.kid} was published {int(waited.total_seconds())} s ago; "
                    f"verifiers may cache the JWKS for {int(published_for.total_seconds())} s"
                )
            until = (now + tokens_live_for).isoformat()
            for index, record in enumerate(records):
                if record.state == ACTIVE and record.algorithm == algorithm:
                    records[index] = replace(record, state=RETIRING, publish_until=until)
                elif record.kid == promoted.kid:
                    records[index] = replace(record, state=ACTIVE, activated_at=now.isoformat())
            records.append(self._new_key(algorithm, state=NEXT))
        return replace(promoted, state=ACTIVE, activated_at=now.isoformat())

    def retire(self, *, kid: str | None = None, force: bool = False) -> list[str]:
        """Drop retiring keys whose tokens have all expired (or `kid`, with `force`)."""
        now = self._clock()
        removed: list[str] = []
        with self._locked() as records:
            for record in list(records):
                expired = record.publish_until is not None and (
                    datetime.fromisoformat(record.publish_until) <= now
                )
                chosen = kid is None or record.kid == kid
                if record.state == RETIRING and chosen and (expired or force):
                    records.remove(record)
                    removed.append(record.kid)
        for gone in removed:
            self._pem(gone).unlink(missing_ok=True)
        return removed

    def active_since(self, algorithm: str | None = None) -> datetime | None:
        """When the active key (of `algorithm`) started signing (None if there is none)."""
        for record in self.records():
            if record.state == ACTIVE and algorithm in (None, record.algorithm):
                when = record.activated_at or record.created_at
                return datetime.fromisoformat(when)
        return None

    def _pem(self, kid: str) -> Path:
        return self.path / f"{kid}.pem"

    def _new_key(self, algorithm: str, *, state: str) -> KeyRecord:
        pem = generate_private_key_pem(algorithm)
        kid = load_signing_key(pem, algorithm).kid
        write_private_file(self._pem(kid), pem)
        now = self._clock().isoformat()
        return KeyRecord(kid, algorithm, state, now, now if state == ACTIVE else None)

    @contextmanager
    def _locked(self) -> Iterator[list[KeyRecord]]:
        """Hold the directory lock; whatever the block leaves in the list is written."""
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(self.path / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = self.records()
            yield records
            temp = self._manifest.with_suffix(".tmp")
            temp.write_text(
                json.dumps({"keys": [asdict(r) for r in records]}, indent=2), encoding="utf-8"
            )
            os.replace(temp, self._manifest)

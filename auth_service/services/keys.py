"""Keep the signing keys current: reload on change, rotate on schedule, retire when safe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from auth_service.security.keyring import KeyDirectory, KeyRing

__all__ = ["KeyWatcher"]

log = logging.getLogger(__name__)


class KeyWatcher:
    """Polls a key directory; calls `on_change` with the new ring whenever it changed."""

    def __init__(
        self,
        directory: KeyDirectory,
        *,
        algorithm: str,
        clock: Callable[[], datetime],
        also: tuple[str, ...] = (),
        poll_interval: timedelta,
        rotate_every: timedelta | None,
        published_for: timedelta,
        tokens_live_for: timedelta,
    ) -> None:
        self.directory = directory
        self._algorithm = algorithm
        # Every algorithm with a key of its own, each rotated the same way (ID tokens).
        self._algorithms = (algorithm, *(a for a in also if a != algorithm))
        self._clock = clock
        self._poll = poll_interval.total_seconds()
        self._rotate_every = rotate_every
        self._published_for = published_for
        self._tokens_live_for = tokens_live_for
        self._version = -1

    def load(self) -> KeyRing:
        """The current ring; an algorithm without a key gets its first one (an empty
        directory's first start, or a new algorithm such as ID tokens' RS256)."""
        present = {r.algorithm for r in self.directory.records()}
        for algorithm in self._algorithms:
            if algorithm not in present:
                record = self.directory.generate(algorithm)
                log.warning(
                    "key directory %s had no %s key: created key %s",
                    self.directory.path,
                    algorithm,
                    record.kid,
                )
        self._version = self.directory.version()
        return self.directory.load(self._algorithm)

    def maintain(self) -> KeyRing | None:
        """One round: rotate or retire if due, then the new ring if anything changed."""
        if self._rotate_every is not None:
            for algorithm in self._algorithms:
                self._rotate_if_due(algorithm, self._rotate_every)
            self.directory.retire()
        version = self.directory.version()
        if version == self._version:
            return None
        self._version = version
        return self.directory.load(self._algorithm)

    async def run(self, on_change: Callable[[KeyRing], None]) -> None:
        """Forever: maintain off the event loop every poll interval (cancel to stop)."""
        while True:
            await asyncio.sleep(self._poll)
            try:
                ring = await asyncio.to_thread(self.maintain)
            except (OSError, ValueError) as exc:
                log.error("key directory check failed, keeping current keys: %s", exc)
                continue
            if ring is not None:
                on_change(ring)
                log.info(
                    "signing keys reloaded: active %s, %d published",
                    ring.active.kid,
                    len(ring.published),
                )

    def _rotate_if_due(self, algorithm: str, every: timedelta) -> None:
        records = self.directory.records()
        if not any(r.state == "next" and r.algorithm == algorithm for r in records):
            self.directory.generate(algorithm)
            return  # publish it first; it may sign after the JWKS cache lifetime
        since = self.directory.active_since(algorithm)
        if since is not None and self._clock() - since < every:
            return
        try:
            self.directory.rotate(
                algorithm,
                published_for=self._published_for,
                tokens_live_for=self._tokens_live_for,
            )
        except ValueError as exc:  # not published long enough yet: try next round
            log.info("key rotation postponed: %s", exc)

"""One `serve` per embedded data dir: its in-process revocation state is not shared.

Two servers with the in-process store on one data dir would each keep their own denylist,
so a logout on one would not reach the other. The first `serve` holds an exclusive
flock(2) on a file in the data dir for its whole life (the kernel drops it when the
process exits, however it exits); a second one is refused. One-shot CLI commands take no
lock: they commit to SQL and announce the change through the marker file, which the
running server watches.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["LOCK_FILE", "DataDirInUse", "exclusive_data_dir"]

LOCK_FILE = "serve.lock"


class DataDirInUse(Exception):
    """Another process serves from this data dir with in-process revocation state."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        self.data_dir = data_dir
        self.holder = holder
        owner = f" (pid {holder})" if holder else ""
        super().__init__(
            f"another `serve`{owner} already uses the data dir {data_dir}: two servers with "
            "in-process revocation state do not see each other's logouts; stop it, or set "
            "AUTH_REDIS_URL so every server shares one revocation store"
        )


@contextmanager
def exclusive_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold the data dir's serve lock until the block ends; DataDirInUse if taken."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = data_dir / LOCK_FILE
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip()
            raise DataDirInUse(data_dir, holder) from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # releases the lock

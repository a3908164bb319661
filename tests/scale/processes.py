"""Processes the harness starts inside namespaces, each in its own process group.

A service replica is a uvicorn supervisor plus workers: signals go to the whole group
(its leader's PID), so SIGKILL really takes the replica down and nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Proc", "Processes"]

STOP_TIMEOUT_SECONDS = 15.0


@dataclass
class Proc:
    """One started program: its argv, environment, log file and (while running) process."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        assert self.process is None, f"{self.name} is already running"
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal_group(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def wait(self, timeout: float) -> bool:
        """True when the process exited within `timeout` seconds."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL the whole group: a crash, no shutdown code runs."""
        self.signal_group(signal.SIGKILL)
        self.wait(STOP_TIMEOUT_SECONDS)
        self._reap()

    def stop(self, signum: int = signal.SIGTERM, *, leader_only: bool = False) -> float:
        """Ask the group (or its leader only) to stop, SIGKILL it after a bound; seconds."""
        started = time.monotonic()
        if leader_only and self.process is not None:
            self.process.send_signal(signum)
        else:
            self.signal_group(signum)
        if not self.wait(STOP_TIMEOUT_SECONDS):
            self.signal_group(signal.SIGKILL)
            self.wait(STOP_TIMEOUT_SECONDS)
        self._reap()
        return time.monotonic() - started

    def _reap(self) -> None:
        # Workers of a killed supervisor may linger a moment: clear the group too.
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Processes:
    """Every program of one run, stopped by PID (process group) in reverse start order."""

    directory: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def add(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, self.directory / f"{name}.log", env)
        self.procs[name] = proc
        return proc

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

"""uvicorn's multi-worker supervisor, exiting non-zero when a worker fails to start.

uvicorn stops its supervisor when a worker exits with its startup-failure code (the app's
lifespan failed), but then returns normally, so `serve` with AUTH_WORKERS > 1 exited 0 and
a container restart policy or systemd saw success.
"""

from __future__ import annotations

from socket import socket

from uvicorn import Config
from uvicorn.supervisors import Multiprocess

__all__ = ["run_workers"]


class _Supervisor(Multiprocess):
    """Multiprocess that remembers whether it stopped because a worker failed to start."""

    startup_failed = False

    def keep_subprocess_alive(self) -> None:
        # Signals set should_exit before this runs (and it then returns at once); anything
        # else that sets it here is a worker that failed its startup.
        stopping = self.should_exit.is_set()
        super().keep_subprocess_alive()
        if not stopping and self.should_exit.is_set():
            self.startup_failed = True


def run_workers(config: Config, sockets: list[socket]) -> bool:
    """Supervise `config.workers` processes sharing `sockets` until told to stop; False on
    failure."""
    try:
        supervisor = _Supervisor(config, sockets=sockets)
        supervisor.run()
    finally:
        for sock in sockets:
            sock.close()
    return not supervisor.startup_failed

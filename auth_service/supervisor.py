"""uvicorn's multi-worker supervisor: draining workers, non-zero exit when one fails to start.

uvicorn stops its supervisor when a worker exits with its startup-failure code (the app's
lifespan failed), but then returns normally, so `serve` with AUTH_WORKERS > 1 exited 0 and
a container restart policy or systemd saw success.

On SIGTERM the supervisor passes SIGTERM on to every worker and waits for them; each worker
runs serving.DrainingServer, so each fails readiness and drains before it stops.
"""

from __future__ import annotations

from socket import socket
from unittest import mock

from uvicorn import Config, Server
from uvicorn.supervisors import Multiprocess, multiprocess

from auth_service.serving import DrainingServer

__all__ = ["run_workers"]


class _DrainingProcess(multiprocess.Process):
    """A worker process whose server is a DrainingServer (the object travels pickled into
    the spawned process, so the class applies there without any patching)."""

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


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
        # uvicorn names its worker class in several places (start, restart, respawn).
        with mock.patch.object(multiprocess, "Process", _DrainingProcess):
            supervisor = _Supervisor(config, sockets=sockets)
            supervisor.run()
    finally:
        for sock in sockets:
            sock.close()
    return not supervisor.startup_failed

"""The service under test: `auth-service serve` started with the tests' process helpers.

tests/processes.py owns starting and stopping a service process by PID; this module adds
what only the bench reads: setup requests, /proc CPU and memory figures of the server and
its worker processes, and the hashing backlog from /metrics.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.machine import thread_cpu
from bench.plan import HOST
from tests.processes import Replica, run_cli

__all__ = ["BenchServer", "service_env"]

READY_TIMEOUT_S = 60.0
INTROSPECTION_CLIENT = "bench-resource-server"


def service_env(overrides: dict[str, str]) -> dict[str, str]:
    """The caller's environment (any AUTH_* tuning included) plus the bench's settings."""
    env = dict(os.environ)
    env.update({"AUTH_HOST": HOST, "AUTH_LOG_LEVEL": "WARNING"})
    # Every bench client comes from 127.0.0.1: per-IP throttles would measure themselves.
    # Per-account and per-(account, IP) limits stay at their defaults (see enumeration).
    env.update(
        {"AUTH_REGISTER_MAX_PER_IP": "100000000", "AUTH_LOGIN_MAX_FAILURES_PER_IP": "100000000"}
    )
    env.update(overrides)
    return env


class BenchServer:
    """One running service: migrated, with a confidential client for /introspect and
    client_credentials."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.env = env  # without the ports: a second server over the same data reuses it
        self._workdir = workdir
        # Port 0: the kernel picks both while the server binds; Replica reads them back.
        self._env = {**env, "AUTH_PORT": "0", "AUTH_MANAGEMENT_PORT": "0"}
        self._replica = Replica(name, workdir / f"{name}.log")
        self.introspection_client: tuple[str, str] = ("", "")

    @property
    def port(self) -> int:
        """The loopback port it serves on."""
        return self._replica.port

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self._replica.process is not None
        return self._replica.process.pid

    def start(self, *, client: tuple[str, str] | None = None) -> None:
        """Migrate, register the bench's client (unless the database has `client` already),
        serve, wait (bounded) for /readyz = 200."""
        # cwd is the temp dir, so no stray .env from the checkout is read.
        run_cli(self._env, self._workdir, "migrate")
        if client is None:
            output = run_cli(
                self._env,
                self._workdir,
                "clients",
                "add",
                INTROSPECTION_CLIENT,
                "--confidential",
                "--introspection",
                "--grants",
                "client_credentials",  # the client_credentials cells use it too
            )
            client = (INTROSPECTION_CLIENT, json.loads(output.splitlines()[-1])["client_secret"])
        self.introspection_client = client
        self._replica.start(self._env, cwd=self._workdir)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            self._replica.wait_until_healthy(deadline)
            while self._request("GET", "/readyz", "", {}, management=True)[0] != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("/readyz never answered 200:\n" + self._replica.output())
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM by PID (uvicorn stops its workers), SIGKILL after a bounded wait."""
        self._replica.stop()

    def call(
        self, method: str, path: str, body: str = "", headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One blocking request for setup (not measured): status and JSON object body."""
        status, raw = self._request(method, path, body, headers or {})
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {}
        return status, data if isinstance(data, dict) else {"items": data}

    def _request(
        self,
        method: str,
        path: str,
        body: str,
        headers: dict[str, str],
        *,
        management: bool = False,
    ) -> tuple[int, bytes]:
        """One request to the public port, or to the management port (/readyz, /metrics)."""
        port = self._replica.management_port if management else self.port
        connection = http.client.HTTPConnection(HOST, port, timeout=30)
        try:
            connection.request(method, path, body=body or None, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def pids(self) -> list[int]:
        """The server's PID and its descendants' (uvicorn workers when AUTH_WORKERS > 1)."""
        parents: dict[int, list[int]] = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(stat.parent.name))
        found: list[int] = []
        queue = [self.pid]
        while queue and len(found) < 1000:
            pid = queue.pop()
            found.append(pid)
            queue.extend(parents.get(pid, []))
        return found

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak RSS) from /proc/<pid>/status, summed over the server's
        processes (one unless AUTH_WORKERS > 1)."""
        figures = {"VmRSS": 0, "VmHWM": 0}
        for pid in self.pids():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    name, _, value = line.partition(":")
                    if name in figures:
                        figures[name] += int(value.split()[0])
        return figures

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time so far of the event-loop (main) threads and of all other threads.

        A process line counts its exited threads too; a main thread's tid is its pid.
        """
        loop = total = 0.0
        for pid in self.pids():
            total += thread_cpu(Path(f"/proc/{pid}/stat"))
            loop += thread_cpu(Path(f"/proc/{pid}/task/{pid}/stat"))
        return loop, total - loop

    def wait_until_hashing_drained(self, timeout_s: float = 60.0) -> float:
        """Wait (bounded) until no argon2 job runs or waits in the server; the seconds waited.

        A login cell ends with its clients' last requests still queued for the hashing pool
        (up to c of them, ~0.1-0.2 s of CPU each): without this, they would run during the
        next ceiling or "idle" cell.
        """
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            status, raw = self._request("GET", "/metrics", "", {}, management=True)
            if status != 200:
                raise RuntimeError(f"/metrics answered {status}")
            busy = [
                float(line.split()[-1])
                for line in raw.decode(errors="replace").splitlines()
                if line.startswith("auth_password_hash_in_flight")
            ]
            if sum(busy) == 0:
                break
            time.sleep(0.05)
        return time.monotonic() - started

    def reset_peak_rss(self) -> bool:
        """Reset VmHWM to the current RSS (Linux clear_refs 5); False where not allowed."""
        try:
            for pid in self.pids():
                Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            return False
        return True

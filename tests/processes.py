"""Real service processes on loopback for tests (and `make bench`).

A service starts on port 0 (public and management): the kernel picks both ports while
`serve` binds them, and `serve` writes them to AUTH_PORTS_FILE, which `Replica` reads; no
port is ever chosen first and bound later, so two tests cannot race for one. Each
process's output goes to a file that failing tests print; processes are stopped by their
PIDs. bench/ imports `Replica` and `run_cli` from here, so nothing at module level may
need more than the test extras (tests.conftest is imported where used).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

__all__ = [
    "Replica",
    "argon2_env",
    "closed_port",
    "free_port",
    "migrate_schema",
    "read_ports_file",
    "run_cli",
    "running_service",
    "service_env",
]

STOP_TIMEOUT_SECONDS = 10.0
CLI_TIMEOUT_SECONDS = 60.0


def free_port() -> int:
    """A port nobody listens on right now (the kernel picks it), for redis-server, whose
    `--port 0` means no TCP at all; the service is never started this way (it binds port
    0 itself), and a redis-server that lost the port to someone else fails to start."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def closed_port() -> int:
    """A port to be refused on (a database or Redis that is not there)."""
    return free_port()


def read_ports_file(
    path: Path, process: subprocess.Popen[bytes], deadline: float
) -> tuple[int, int] | None:
    """The (public, management) ports `serve` wrote to `path`; None if it exited first."""
    while True:
        try:
            ports = json.loads(path.read_text())
            return int(ports["port"]), int(ports["management_port"])
        except FileNotFoundError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            return None
        time.sleep(0.05)


@dataclass
class Replica:
    """One service process on kernel-picked ports, and where its output goes."""

    name: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    # Known once started (0 before): the ports the process bound and wrote down.
    port: int = 0
    management_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.management_port}"

    @property
    def ports_file(self) -> Path:
        return self.log_path.with_name(f"{self.log_path.name}.ports")

    def start(self, env: dict[str, str], cwd: Path) -> None:
        """Start `serve` on port 0 (unless `env` names ports); wait_until_healthy reads them."""
        self.ports_file.unlink(missing_ok=True)
        self.port = self.management_port = 0
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "auth_service", "serve"],
                env={
                    "AUTH_PORT": "0",
                    "AUTH_MANAGEMENT_PORT": "0",
                    **env,
                    "AUTH_PORTS_FILE": str(self.ports_file),
                },
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_for_ports(self, deadline: float) -> None:
        """Read the bound ports (the sockets listen from then on, answered or not)."""
        assert self.process is not None
        ports = read_ports_file(self.ports_file, self.process, deadline)
        if ports is None:
            pytest.fail(
                f"replica {self.name} wrote no ports (exit {self.process.poll()}):\n"
                + self.output()
            )
        self.port, self.management_port = ports

    def wait_until_healthy(self, deadline: float) -> None:
        assert self.process is not None
        if not self.port:
            self.wait_for_ports(deadline)
        with httpx.Client(base_url=self.url, timeout=1.0) as client:
            while True:
                if self.process.poll() is not None:
                    pytest.fail(
                        f"replica {self.name} exited with {self.process.returncode}:\n"
                        + self.output()
                    )
                try:
                    if client.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"replica {self.name} did not answer /healthz in time:\n" + self.output()
                    )
                time.sleep(0.1)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def service_env(directory: Path, **settings: str) -> dict[str, str]:
    """The environment of a service process under test.

    The parent's variables without any AUTH_* (a developer's settings must not leak in), a
    test environment on 127.0.0.1, port 0 (public and management: the kernel picks)
    keeping its data in `directory`, then `settings` (full AUTH_* names).
    """
    from tests.conftest import TEST_ARGON2  # here: bench imports this module without conftest

    env = {key: value for key, value in os.environ.items() if not key.startswith("AUTH_")}
    env |= {
        "AUTH_ENVIRONMENT": "test",
        "AUTH_HOST": "127.0.0.1",
        # Never fixed ports: tests (and other checkouts) run side by side.
        "AUTH_PORT": "0",
        "AUTH_MANAGEMENT_PORT": "0",
        "AUTH_DATA_DIR": str(directory),
        "AUTH_DRAIN_SECONDS": "0",  # stop at once on SIGTERM (tests/test_drain.py drains)
        # argon2id as cheap as in-process tests use (argon2_env(FLOOR_ARGON2): the floor)
        **argon2_env(TEST_ARGON2),
        **settings,
    }
    return env


def argon2_env(parameters: dict[str, int]) -> dict[str, str]:
    """Settings such as tests.conftest.FLOOR_ARGON2 as a service's AUTH_* variables."""
    return {f"AUTH_{name.upper()}": str(value) for name, value in parameters.items()}


def migrate_schema(env: dict[str, str]) -> None:
    """Apply the shipped migrations to the database a service with `env` uses, in this
    process: what `auth-service migrate` does to the schema, without the ~0.9 s of CPU a
    `migrate` process spends, mostly on imports. Tests of the command itself run it. On a
    thread of its own: Alembic's env.py calls asyncio.run, which refuses to start inside a
    running loop (an async test's, or Playwright's sync API's)."""
    from auth_service.config import Settings
    from auth_service.db.migrate import upgrade_to_head

    where = Settings.model_validate(
        {
            "environment": "test",
            "database_url": env.get("AUTH_DATABASE_URL"),
            "data_dir": env["AUTH_DATA_DIR"],
        }
    )
    with ThreadPoolExecutor(max_workers=1) as thread:
        thread.submit(upgrade_to_head, where.effective_database_url).result()


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> str:
    """Run `auth-service ARGS` to completion; its stdout, or the test fails with stderr."""
    completed = subprocess.run(
        [sys.executable, "-m", "auth_service", *args],
        env=env,
        cwd=cwd,  # no developer .env is read from here
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    assert completed.returncode == 0, f"auth-service {' '.join(args)}: {completed.stderr}"
    return completed.stdout


@contextmanager
def running_service(
    name: str, env: dict[str, str], directory: Path, *, start_timeout: float = 20.0
) -> Iterator[Replica]:
    """Migrate, start `auth-service serve`, wait for /healthz; stop it by PID afterwards."""
    migrate_schema(env)
    service = Replica(name, directory / f"{name}.log")
    service.start(env, cwd=directory)
    try:
        service.wait_until_healthy(time.monotonic() + start_timeout)
        yield service
    finally:
        service.stop()

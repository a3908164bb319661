"""AUTH_WORKERS: `serve` runs several uvicorn worker processes that share Redis.

The container image makes the worker count configurable through this setting; more than one
worker without Redis is refused, since each would keep its own revocation state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from auth_service.config import Settings
from tests.conftest import PASSWORD, delete_keys
from tests.processes import migrate_schema, read_ports_file, service_env


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def test_more_than_one_worker_needs_redis() -> None:
    with pytest.raises(ValueError, match="AUTH_WORKERS above 1 needs AUTH_REDIS_URL"):
        Settings(_env_file=None, environment="test", workers=2)
    assert Settings(_env_file=None, workers=2, redis_url="redis://x").workers == 2


@pytest.fixture
def two_workers(tmp_path: Path, redis_server_url: str) -> Iterator[tuple[str, int]]:
    """`auth-service serve` with AUTH_WORKERS=2 on SQLite and the test Redis."""
    prefix = f"authtest:workers:{os.getpid()}:{secrets.token_hex(4)}:"
    ports_file = tmp_path / "serve.ports"
    env = service_env(
        tmp_path,
        AUTH_PORTS_FILE=str(ports_file),
        AUTH_WORKERS="2",
        AUTH_REDIS_URL=redis_server_url,
        AUTH_REDIS_KEY_PREFIX=prefix,
        AUTH_HASH_POOL_SIZE="1",
        AUTH_LOG_LEVEL="WARNING",
    )
    migrate_schema(env)
    command = [sys.executable, "-m", "auth_service"]
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*command, "serve"], cwd=tmp_path, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        ports = read_ports_file(ports_file, process, deadline)
        assert ports is not None, f"no ports written:\n{log.read_text()}"
        base_url = f"http://127.0.0.1:{ports[0]}"
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"no /healthz within 30 s:\n{log.read_text()}"
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield base_url, process.pid
    finally:
        workers = _children(process.pid)
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        for pid in workers:  # never leave a worker behind, even if the supervisor died
            with contextlib.suppress(OSError):
                if b"multiprocessing" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        asyncio.run(delete_keys(redis_server_url, prefix))


@pytest.mark.slow
def test_two_workers_share_revocations(two_workers: tuple[str, int]) -> None:
    base_url, supervisor = two_workers
    deadline = time.monotonic() + 20
    while len(_children(supervisor)) < 2:  # uvicorn starts the workers one after the other
        assert time.monotonic() < deadline, "uvicorn did not start two worker processes"
        time.sleep(0.1)
    created = httpx.post(
        f"{base_url}/register", json={"username": "worker", "password": PASSWORD}, timeout=10
    )
    assert created.status_code == 201, created.text
    grant = httpx.post(
        f"{base_url}/token",
        data={"grant_type": "password", "username": "worker", "password": PASSWORD},
        timeout=10,
    )
    assert grant.status_code == 200, grant.text
    bearer = {"Authorization": f"Bearer {grant.json()['access_token']}"}
    assert httpx.post(f"{base_url}/logout", headers=bearer, timeout=10).status_code == 204
    # A new connection each time, so the kernel spreads them over both workers.
    statuses = {
        httpx.get(f"{base_url}/users/me", headers=bearer, timeout=5).status_code for _ in range(12)
    }
    assert statuses == {401}

"""Redis through Sentinel: the service finds the primary and follows a failover by itself.

The test starts its own redis-server primary, a replica and one Sentinel on free loopback
ports (never the shared Redis) and stops them by PID. After SIGKILL of the primary and
Sentinel's promotion of the replica, the same running app keeps working: nothing restarts.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from auth_service.app import create_app
from auth_service.config import Settings
from tests.conftest import TEST_ISSUER, _service_missing, make_settings, password_grant, register
from tests.processes import free_port

MASTER = "authmaster"
START_TIMEOUT_SECONDS = 5.0
FAILOVER_TIMEOUT_SECONDS = 20.0


def _executable(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        _service_missing(name, FileNotFoundError(f"{name} is not on PATH"))
        raise AssertionError("unreachable")  # _service_missing skips or fails
    return path


class Processes:
    """Redis processes this test started, each stopped by its PID."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, port: int, *command: str) -> subprocess.Popen[bytes]:
        log = (self.directory / f"{port}.log").open("wb")
        process = subprocess.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.running[port] = process
        client = redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        try:
            while True:
                try:
                    if client.ping():
                        return process
                except redis.RedisError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    output = (self.directory / f"{port}.log").read_text(errors="replace")
                    pytest.fail(f"{command[0]} on port {port} did not start:\n{output}")
                time.sleep(0.05)
        finally:
            client.close()

    def kill(self, port: int) -> None:
        process = self.running.pop(port)
        process.kill()
        process.wait(timeout=5)

    def stop_all(self) -> None:
        for port in list(self.running):
            process = self.running.pop(port)
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


class Topology:
    """A primary, its replica and a Sentinel watching them."""

    def __init__(self, processes: Processes) -> None:
        server = _executable("redis-server")
        sentinel = _executable("redis-sentinel")
        self.processes = processes
        self.primary, self.replica, self.sentinel = free_port(), free_port(), free_port()
        common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        common += ["--dir", str(processes.directory)]
        processes.start(self.primary, server, "--port", str(self.primary), *common)
        processes.start(
            self.replica,
            server,
            "--port",
            str(self.replica),
            *common,
            "--replicaof",
            "127.0.0.1",
            str(self.primary),
        )
        config = processes.directory / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel}\nbind 127.0.0.1\ndir {processes.directory}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 500\n"
            f"sentinel failover-timeout {MASTER} 5000\n"
        )
        processes.start(self.sentinel, sentinel, str(config))

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)

    def primary_port(self) -> int:
        with self.client(self.sentinel) as client:
            address = client.sentinel_get_master_addr_by_name(MASTER)
        return int(address[1])

    def wait_replicated(self) -> None:
        """Block until the replica acknowledged every write so far (WAIT 1)."""
        with self.client(self.primary) as client:
            assert client.wait(1, 5000) == 1, "the replica did not catch up"

    def wait_promoted(self) -> None:
        deadline = time.monotonic() + FAILOVER_TIMEOUT_SECONDS
        while self.primary_port() != self.replica:
            assert time.monotonic() < deadline, "Sentinel did not promote the replica"
            time.sleep(0.1)


@pytest.fixture
def topology(tmp_path: Path) -> Iterator[Topology]:
    processes = Processes(tmp_path)
    try:
        yield Topology(processes)
    finally:
        processes.stop_all()


@pytest.fixture
async def sentinel_client(
    topology: Topology, postgres_url: str, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        postgres_url,
        tmp_path,
        redis_sentinels=f"127.0.0.1:{topology.sentinel}",
        redis_sentinel_master=MASTER,
        redis_key_prefix=f"sentineltest{secrets.token_hex(4)}:",
    )
    application = create_app(settings)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            yield client


async def _login(client: httpx.AsyncClient, username: str) -> str:
    """Log in, retrying while the failover is under way (503 then), within a deadline."""
    deadline = time.monotonic() + FAILOVER_TIMEOUT_SECONDS
    while True:
        response = await password_grant(client, username)
        if response.status_code == 200:
            token: str = response.json()["access_token"]
            return token
        assert response.status_code == 503, response.text
        assert "Retry-After" in response.headers
        assert time.monotonic() < deadline, "the service did not follow the failover"
        await asyncio.sleep(0.2)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.slow
async def test_follows_a_sentinel_failover_without_a_restart(
    topology: Topology, sentinel_client: httpx.AsyncClient
) -> None:
    username = f"sentinel{secrets.token_hex(4)}"
    await register(sentinel_client, username)
    before = await _login(sentinel_client, username)
    assert (await sentinel_client.post("/logout", headers=_bearer(before))).status_code == 204
    with topology.client(topology.primary) as primary:
        assert primary.dbsize() > 0, "the revocation did not reach the Sentinel's primary"
    topology.wait_replicated()

    topology.processes.kill(topology.primary)
    topology.wait_promoted()

    after = await _login(sentinel_client, username)
    assert (await sentinel_client.get("/users/me", headers=_bearer(after))).status_code == 200
    assert (await sentinel_client.post("/logout", headers=_bearer(after))).status_code == 204
    for token in (before, after):
        response = await sentinel_client.get("/users/me", headers=_bearer(token))
        assert response.status_code == 401, response.text
    with topology.client(topology.replica) as promoted:
        assert promoted.info("replication")["role"] == "master"
        assert promoted.dbsize() > 0


@pytest.mark.parametrize(
    "values",
    [
        {"redis_sentinels": "127.0.0.1:26379"},
        {"redis_sentinel_master": MASTER},
        {
            "redis_sentinels": "127.0.0.1:26379",
            "redis_sentinel_master": MASTER,
            "redis_url": "redis://127.0.0.1:6379/0",
        },
        {"redis_sentinels": "no-port", "redis_sentinel_master": MASTER},
        {"redis_sentinels": ":26379", "redis_sentinel_master": MASTER},
    ],
)
def test_refuses_incomplete_sentinel_settings(values: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="SENTINEL"):
        make_settings("sqlite+aiosqlite:///x.db", tmp_path, **values)


def test_sentinel_counts_as_shared_redis(tmp_path: Path) -> None:
    settings: Settings = make_settings(
        "sqlite+aiosqlite:///x.db",
        tmp_path,
        workers=2,
        redis_sentinels="10.0.0.1:26379, [::1]:26380",
        redis_sentinel_master=MASTER,
    )
    assert settings.uses_redis
    assert settings.redis_sentinel_addresses == [("10.0.0.1", 26379), ("::1", 26380)]

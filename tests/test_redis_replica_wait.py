"""Revocation writes wait for a Redis replica (WAIT) where the primary has one.

A failover promotes a replica; a revocation it had not received would be lost there until
the next reseed. The test starts its own primary (and replica) on free loopback ports and
stops them by PID, never touching the shared Redis.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis import asyncio as redis_asyncio

from auth_service.stores import revocation
from auth_service.stores.revocation import RedisStore
from tests.processes import free_port
from tests.test_redis_sentinel import Processes, _executable

SYNC_TIMEOUT_SECONDS = 10.0


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def _server(processes: Processes, *extra: str) -> int:
    port = free_port()
    common = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    common += ["--dir", str(processes.directory)]
    processes.start(port, _executable("redis-server"), "--port", str(port), *common, *extra)
    return port


def _wait_synced(primary: int) -> None:
    """Until the replica connected and finished its initial sync (WAIT 1 answers 1)."""
    with redis.Redis(port=primary) as client:
        deadline = time.monotonic() + SYNC_TIMEOUT_SECONDS
        while int(client.info("replication").get("connected_slaves", 0)) < 1:
            assert time.monotonic() < deadline, "the replica did not connect"
            time.sleep(0.05)
        assert client.wait(1, int(SYNC_TIMEOUT_SECONDS * 1000)) == 1, "the replica did not sync"


def _wait_calls(port: int) -> int:
    with redis.Redis(port=port) as client:
        stats = client.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


async def test_a_revocation_is_on_the_replica_when_the_write_returns(
    processes: Processes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The service waits at most 250 ms for the replica (then logs and returns); a loaded CI
    # machine once took longer. A longer bound keeps this test about the wait itself.
    monkeypatch.setattr(revocation, "REPLICA_ACK_TIMEOUT_MS", int(SYNC_TIMEOUT_SECONDS * 1000))
    primary = _server(processes)
    replica = _server(processes, "--replicaof", "127.0.0.1", str(primary))
    _wait_synced(primary)
    waits_before = _wait_calls(primary)
    async with redis_asyncio.Redis(port=primary) as client:
        store = RedisStore(client, prefix="waittest:")
        await store.revoke_token("jti-1", 60)
    assert _wait_calls(primary) > waits_before
    with redis.Redis(port=replica) as client:
        assert client.get("waittest:revoked-token:jti-1") == b"1"


async def test_without_a_replica_a_revocation_does_not_wait(processes: Processes) -> None:
    primary = _server(processes)
    async with redis_asyncio.Redis(port=primary) as client:
        store = RedisStore(client, prefix="waittest:")
        await store.revoke_token("jti-1", 60)
        await store.revoke_sessions(["sid-1"], 60)
    assert _wait_calls(primary) == 0

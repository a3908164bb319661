"""Denylist reads made together share one MGET, and each caller gets only its own answer."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from redis import asyncio as redis_asyncio

from auth_service.errors import StoreUnavailable
from auth_service.stores.coalesced import CoalescedMget
from auth_service.stores.revocation import RedisStore, SeedData
from tests.conftest import delete_keys


class FakeRedis:
    """MGET over a dict, recording each command; `failure` makes the next one raise."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.commands: list[list[str]] = []
        self.failure: Exception | None = None
        self.gate: asyncio.Event | None = None

    async def mget(self, keys: list[str]) -> list[Any]:
        self.commands.append(keys)
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        return [self.values.get(key) for key in keys]


async def test_reads_made_together_go_out_as_one_command() -> None:
    redis = FakeRedis({"a": "1", "c": "3", "e": "5"})
    reads = CoalescedMget(redis.mget)
    answers = await asyncio.gather(
        reads.mget(["a", "b"]), reads.mget(["c"]), reads.mget(["d", "e", "a"])
    )
    assert list(answers) == [["1", None], ["3"], [None, "5", "1"]]
    assert redis.commands == [["a", "b", "c", "d", "e", "a"]]
    assert await reads.mget(["e"]) == ["5"]  # a later read: a command of its own
    assert len(redis.commands) == 2


async def test_a_failed_command_fails_every_read_in_it_and_only_those() -> None:
    redis = FakeRedis({"a": "1"})
    reads = CoalescedMget(redis.mget)
    redis.failure = ConnectionError("redis went away")
    outcomes = await asyncio.gather(reads.mget(["a"]), reads.mget(["b"]), return_exceptions=True)
    assert [type(outcome) for outcome in outcomes] == [ConnectionError, ConnectionError]
    assert await reads.mget(["a"]) == ["1"]


async def test_a_caller_that_gives_up_does_not_cancel_the_others() -> None:
    redis = FakeRedis({"a": "1", "b": "2"})
    redis.gate = asyncio.Event()
    reads = CoalescedMget(redis.mget)
    impatient = asyncio.create_task(reads.mget(["a"]))
    patient = asyncio.create_task(reads.mget(["b"]))
    await asyncio.sleep(0.01)  # both joined the command, which is now waiting
    assert len(redis.commands) == 1
    impatient.cancel()
    redis.gate.set()
    assert await patient == ["2"]
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_concurrent_status_checks_on_redis_each_get_their_own_answer(
    redis_server_url: str,
) -> None:
    prefix = f"authtest:{secrets.token_hex(6)}:"
    client = redis_asyncio.Redis.from_url(redis_server_url, decode_responses=True)
    store = RedisStore(client, prefix=prefix)
    try:
        ticket = await store.begin_seed()
        assert await store.seed(
            SeedData(
                tokens=[("t1", 60)], sessions=[("s2", 60)], users=[("u3", 7, 60)], ticket=ticket
            )
        )
        checks = [
            store.status(token_id=f"t{i}", session_id=f"s{i}", user_id=f"u{i}") for i in range(5)
        ]
        statuses = await asyncio.gather(*checks)
        assert [s.seeded for s in statuses] == [True] * 5
        assert [s.token_revoked for s in statuses] == [False, True, False, False, False]
        assert [s.session_revoked for s in statuses] == [False, False, True, False, False]
        assert [s.user_not_before for s in statuses] == [None, None, None, 7, None]
        # Nothing listens on port 9 of loopback: every check in the command fails closed.
        unreachable = redis_asyncio.Redis.from_url("redis://127.0.0.1:9/0")
        down = RedisStore(unreachable, prefix=prefix)
        outcomes = await asyncio.gather(
            down.status(token_id="t1", session_id="s", user_id="u"),
            down.status(token_id="t2", session_id="s", user_id="u"),
            return_exceptions=True,
        )
        assert [type(outcome) for outcome in outcomes] == [StoreUnavailable] * 2
        await unreachable.aclose()
    finally:
        await delete_keys(redis_server_url, prefix)
        await client.aclose()

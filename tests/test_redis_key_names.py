"""Readable Redis key names, and an upgrade that loses no revocation.

Releases up to 0.1.x named the entries `jti:`, `sid:` and `unb:`. During a rolling
upgrade both releases share one Redis (and one epoch, so neither reseeds): the new one
reads both names and writes both, so a token revoked by either stays revoked on both.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
from redis import asyncio as redis_asyncio

from auth_service.stores.revocation import RedisStore, SeedData
from tests.conftest import delete_keys


@pytest.fixture
async def redis(redis_server_url: str) -> AsyncIterator[tuple[redis_asyncio.Redis, str]]:
    prefix = f"authtest:{secrets.token_hex(6)}:"
    client = redis_asyncio.Redis.from_url(redis_server_url, decode_responses=True)
    try:
        yield client, prefix
    finally:
        await client.aclose()
        await delete_keys(redis_server_url, prefix)


async def test_entries_written_by_the_previous_release_still_revoke(
    redis: tuple[redis_asyncio.Redis, str],
) -> None:
    client, prefix = redis
    store = RedisStore(client, prefix=prefix)
    # What 0.1.x wrote after its own seed: the epoch and three entries under the old names.
    await client.set(f"{prefix}epoch", "old-release")
    await client.set(f"{prefix}jti:t-old", "1", ex=60)
    await client.set(f"{prefix}sid:s-old", "1", ex=60)
    await client.set(f"{prefix}unb:u-old", "4", ex=60)
    status = await store.status(token_id="t-old", session_id="s-old", user_id="u-old")
    assert status.seeded  # the same epoch: no reseed needed, nothing read from SQL
    assert status.token_revoked
    assert status.session_revoked
    assert status.user_not_before == 4
    # A lower cut-off under the new name does not weaken the old one, nor the reverse.
    await store.set_user_not_before("u-old", 2, 60)
    status = await store.status(token_id="t-new", session_id="s-new", user_id="u-old")
    assert (status.token_revoked, status.session_revoked) == (False, False)
    assert status.user_not_before == 4


async def test_revocations_are_written_under_both_names_for_the_previous_release(
    redis: tuple[redis_asyncio.Redis, str],
) -> None:
    client, prefix = redis
    store = RedisStore(client, prefix=prefix)
    await store.revoke_token("t", 60)
    await store.revoke_sessions(["s"], 60)
    await store.set_user_not_before("u", 7, 60)
    for new, old in (("revoked-token:t", "jti:t"), ("revoked-session:s", "sid:s")):
        assert await client.get(prefix + new) == await client.get(prefix + old) == "1"
        assert await client.ttl(prefix + new) > 30
        assert await client.ttl(prefix + old) > 30
    assert await client.get(f"{prefix}user-not-before:u") == "7"
    assert await client.get(f"{prefix}unb:u") == "7"


async def test_a_reseed_writes_both_names(redis: tuple[redis_asyncio.Redis, str]) -> None:
    client, prefix = redis
    store = RedisStore(client, prefix=prefix)
    ticket = await store.begin_seed()
    data = SeedData(tokens=[("t", 60)], sessions=[("s", 60)], users=[("u", 3, 60)], ticket=ticket)
    assert await store.seed(data)
    names = {key.removeprefix(prefix) async for key in client.scan_iter(match=f"{prefix}*")}
    assert names == {
        "epoch",
        "generation",  # the mirror of SQL's revocation generation the seed read
        "revoked-token:t",
        "revoked-session:s",
        "user-not-before:u",
        "jti:t",
        "sid:s",
        "unb:u",
    }

"""Revoked stays revoked through any sequence of Redis flushes (PostgreSQL + own Redis).

Rounds of concurrent logouts and access-token revocations race FLUSHALLs sent at random
offsets to a redis-server this test starts (never the shared one), while a reader keeps
triggering reseeds. After every round each revoked token must be refused: a flush may
never split a restore, and a revocation committed while a reseed reads SQL is not lost.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis import asyncio as redis_asyncio

from auth_service.app import create_app
from auth_service.services.sessions import revoke_session_ids
from auth_service.stores.revocation import RedisStore, SeedData
from tests.conftest import TEST_ISSUER, make_settings, password_grant, register
from tests.test_redis_faults import RedisProcess, claims, redis_process  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

PREFIX = "stormtest:"
ROUNDS = 15
LOGOUTS_PER_ROUND = 6
REVOKES_PER_ROUND = 6


@pytest.fixture
async def storm_client(
    postgres_url: str,
    redis_process: RedisProcess,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        postgres_url,
        tmp_path,
        redis_url=redis_process.url,
        redis_key_prefix=PREFIX,
        # Cheap hashing (allowed in the test environment): the storm needs many logins.
        password_hash_memory_kib=8,
        password_hash_time_cost=1,
        # This test is about revocation, not throttling: its many right logins from one
        # address must never meet a limit, however fast or slow the machine runs them.
        login_max_failures_per_pair=100,
        login_max_failures_per_account=100,
        login_max_failures_per_ip=100_000,
    )
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_no_revoked_token_is_accepted_through_a_flush_storm(
    storm_client: httpx.AsyncClient,
    redis_process: RedisProcess,  # noqa: F811 - the fixture imported above
) -> None:
    client = storm_client
    username = f"storm-{random.randrange(10**9)}"
    await register(client, username)
    flusher = redis_asyncio.Redis.from_url(redis_process.url)
    rng = random.Random(12)
    revoked: list[str] = []
    accepted: list[str] = []

    async def login() -> str:
        response = await password_grant(client, username)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    async def logout(token: str) -> None:
        response = await client.post("/logout", headers=bearer(token))
        assert response.status_code == 204, response.text

    async def revoke(token: str) -> None:
        form = {"token": token, "token_type_hint": "access_token"}
        response = await client.post("/revoke", data=form)
        assert response.status_code == 200, response.text

    async def flush_at(offsets: list[float]) -> None:
        for offset in offsets:
            await asyncio.sleep(offset)
            await flusher.flushall()

    async def keep_reading(token: str, stop: asyncio.Event) -> None:
        # Every check after a flush reseeds from SQL, racing the revocations in flight.
        while not stop.is_set():
            response = await client.get("/users/me", headers=bearer(token))
            assert response.status_code == 200, response.text

    try:
        live = await login()
        for _ in range(ROUNDS):
            tokens = await asyncio.gather(
                *(login() for _ in range(LOGOUTS_PER_ROUND + REVOKES_PER_ROUND))
            )
            to_log_out, to_revoke = tokens[:LOGOUTS_PER_ROUND], tokens[LOGOUTS_PER_ROUND:]
            # One to three flushes, some only a few milliseconds apart.
            offsets = [rng.uniform(0, 0.02) for _ in range(rng.randint(1, 3))]
            stop = asyncio.Event()
            reader = asyncio.create_task(keep_reading(live, stop))
            await asyncio.gather(
                flush_at(offsets),
                *(logout(token) for token in to_log_out),
                *(revoke(token) for token in to_revoke),
            )
            stop.set()
            await reader
            revoked += tokens
            for token in tokens:
                response = await client.get("/users/me", headers=bearer(token))
                if response.status_code != 401:
                    accepted.append(token)
        # And a sample again while Redis is flushed every few milliseconds: a check may
        # fail closed (503) but never accept.
        stop = asyncio.Event()

        async def keep_flushing() -> None:
            while not stop.is_set():
                await flusher.flushall()
                await asyncio.sleep(rng.uniform(0.002, 0.02))

        flushing = asyncio.create_task(keep_flushing())
        for token in rng.sample(revoked, 30):
            if (await client.get("/users/me", headers=bearer(token))).status_code == 200:
                accepted.append(token)
        stop.set()
        await flushing
    finally:
        await flusher.aclose()
    assert not accepted, f"{len(accepted)} revoked tokens accepted (of {len(revoked)})"


@pytest.fixture
async def storm_app(
    postgres_url: str,
    redis_process: RedisProcess,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = make_settings(
        postgres_url, tmp_path, redis_url=redis_process.url, redis_key_prefix=PREFIX
    )
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            yield app, client


async def two_sessions(client: httpx.AsyncClient) -> tuple[str, str]:
    username = f"race-{random.randrange(10**9)}"
    await register(client, username)
    tokens = []
    for _ in range(2):
        response = await password_grant(client, username)
        assert response.status_code == 200, response.text
        tokens.append(response.json()["access_token"])
    return tokens[0], tokens[1]


async def test_a_revocation_committed_while_a_reseed_reads_sql_is_not_lost(
    storm_app: tuple[FastAPI, httpx.AsyncClient],
    redis_process: RedisProcess,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, client = storm_app
    ctx = app.state.services
    doomed, live = await two_sessions(client)
    doomed_claims = claims(doomed)
    repository = type(ctx.db.revocations)
    read_sql = repository.recent
    interleaved = False

    async def read_then_race(*args: Any, **kwargs: Any) -> Any:
        nonlocal interleaved
        found = await read_sql(*args, **kwargs)
        if not interleaved:
            interleaved = True
            # After this read: a logout runs to completion, then Redis is flushed again.
            await revoke_session_ids(
                ctx, doomed_claims["sub"], [doomed_claims["sid"]], reason="logout"
            )
            redis_process.flushall()
        return found

    monkeypatch.setattr(repository, "recent", read_then_race)
    redis_process.flushall()
    assert (await client.get("/users/me", headers=bearer(live))).status_code == 200
    assert interleaved
    response = await client.get("/users/me", headers=bearer(doomed))
    assert response.status_code == 401, response.text


async def test_a_flush_right_after_a_reseed_does_not_let_a_check_through(
    storm_app: tuple[FastAPI, httpx.AsyncClient],
    redis_process: RedisProcess,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, client = storm_app
    store = app.state.services.revocations
    doomed, _ = await two_sessions(client)
    assert (await client.post("/logout", headers=bearer(doomed))).status_code == 204
    seed = store.seed
    flushed = False

    async def seed_then_flush(data: Any) -> Any:
        nonlocal flushed
        written = await seed(data)
        if not flushed:
            flushed = True
            redis_process.flushall()  # between the reseed and the check's second read
        return written

    monkeypatch.setattr(store, "seed", seed_then_flush)
    redis_process.flushall()
    response = await client.get("/users/me", headers=bearer(doomed))
    assert flushed
    assert response.status_code == 401, response.text


async def test_a_store_that_never_keeps_a_restore_fails_closed(
    storm_app: tuple[FastAPI, httpx.AsyncClient],
    redis_process: RedisProcess,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, client = storm_app
    store = app.state.services.revocations
    token, _ = await two_sessions(client)

    async def always_lost(data: Any) -> bool:
        redis_process.flushall()
        return False

    monkeypatch.setattr(store, "seed", always_lost)
    redis_process.flushall()
    response = await client.get("/users/me", headers=bearer(token))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"]


async def test_redis_writes_never_weaken_an_entry(
    redis_process: RedisProcess,  # noqa: F811 - the fixture imported above
) -> None:
    client = redis_asyncio.Redis.from_url(redis_process.url, decode_responses=True)
    store = RedisStore(client, prefix=PREFIX)
    try:
        await store.set_user_not_before("u", 5, 60)
        await store.set_user_not_before("u", 3, 1)  # an older cut-off, written late
        await store.revoke_token("t", 60)
        assert await store.seed(
            SeedData(tokens=[("t", 1)], users=[("u", 4, 1)], ticket=await store.begin_seed())
        )
        found = await store.status(token_id="t", session_id="s", user_id="u")
        assert found.seeded
        assert found.token_revoked
        assert found.user_not_before == 5
        assert await client.ttl(f"{PREFIX}revoked-token:t") > 30
        assert await client.ttl(f"{PREFIX}user-not-before:u") > 30
    finally:
        await client.aclose()

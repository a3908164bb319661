"""A store that lost recent revocations but kept its epoch is caught and reseeded.

After a Sentinel failover the promoted replica may lack the last writes (asynchronous
replication): the epoch survives, some denylist entries do not. SQL's revocation
generation (bumped by triggers in each revocation's transaction) is mirrored in the store
after each after-commit write; check_generation finds the mirror behind SQL, forgets the
store and restores it from SQL. The loss is simulated as a failover leaves it: entries
deleted and the mirror moved back, the epoch kept. Both backends; the periodic check is
slowed down (revocation_check_seconds) so that only the test's own checks run.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis import asyncio as redis_asyncio

from auth_service.services.context import ServiceContext
from auth_service.services.revocation import check_generation
from auth_service.stores.revocation import MemoryStore, RedisStore, SeedData
from tests.conftest import Backend, access_token, direct_sql

pytestmark = pytest.mark.settings(revocation_check_seconds=3600)


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 3))
    return claims


async def _lose(app: FastAPI, backend: Backend, keys: list[str], mirror: int) -> None:
    """What a failover to a lagging replica leaves: `keys` gone, the mirror at `mirror`,
    the epoch still there."""
    store = app.state.services.revocations
    if isinstance(store, MemoryStore):
        for key in keys:
            store._entries.pop(key, None)
        store._mirror = mirror
        return
    assert isinstance(store, RedisStore)
    assert backend.redis_url is not None
    client = redis_asyncio.Redis.from_url(backend.redis_url)
    try:
        # the store writes each entry under its name and the 0.1.x name (`sid:`)
        legacy = [key.replace("revoked-session:", "sid:") for key in keys]
        prefixed = [f"{backend.redis_prefix}{key}" for key in [*keys, *legacy]]
        assert await client.delete(*prefixed) == 2 * len(keys)
        await client.set(f"{backend.redis_prefix}generation", mirror)
        assert await client.exists(f"{backend.redis_prefix}epoch")
    finally:
        await client.aclose()


async def _me(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


async def _logout(client: httpx.AsyncClient, token: str) -> None:
    response = await client.post("/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 204


async def _sql_generation(ctx: ServiceContext) -> int:
    return await ctx.db.revocations.generation()


async def test_a_partial_loss_is_detected_and_the_revoked_token_refused_again(
    app: FastAPI, client: httpx.AsyncClient, backend: Backend
) -> None:
    ctx: ServiceContext = app.state.services
    token = await access_token(client, "alice")
    claims = _claims(token)
    before = await _sql_generation(ctx)
    await _logout(client, token)
    assert await _me(client, token) == 401
    # the logout moved SQL's generation, and the store mirrors it
    generation = await _sql_generation(ctx)
    assert generation > before
    assert await ctx.revocations.generation() == generation
    assert await check_generation(ctx) is False  # nothing lost: SQL seen at `generation`
    await _lose(app, backend, [f"revoked-session:{claims['sid']}"], before)
    # the loss is real: the store alone would accept the logged-out token again
    assert await _me(client, token) == 200
    assert await check_generation(ctx) is True
    assert await _me(client, token) == 401
    assert await ctx.revocations.generation() == generation
    assert await check_generation(ctx) is False  # repaired: no second reseed


async def test_writes_after_a_loss_do_not_hide_it(
    app: FastAPI, client: httpx.AsyncClient, backend: Backend
) -> None:
    ctx: ServiceContext = app.state.services
    lost, later = await access_token(client, "bob"), await access_token(client, "carol")
    claims = _claims(lost)
    before = await _sql_generation(ctx)
    await _logout(client, lost)
    await check_generation(ctx)  # SQL seen with bob's logout in it
    await _lose(app, backend, [f"revoked-session:{claims['sid']}"], before)
    # a revocation on the new primary, after the loss, before any check: its mirror
    # write must not cover bob's lost one
    await _logout(client, later)
    assert (await ctx.revocations.generation() or 0) < await _sql_generation(ctx)
    assert await _me(client, lost) == 200
    assert await check_generation(ctx) is True
    assert await _me(client, lost) == 401
    assert await _me(client, later) == 401


async def test_revocations_committed_in_sql_alone_are_caught_too(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # Any write path bumps the generation (triggers), here an operator's own UPDATE.
    ctx: ServiceContext = app.state.services
    token = await access_token(client, "dave")
    claims = _claims(token)
    assert await _me(client, token) == 200
    await check_generation(ctx)
    async with direct_sql(app) as connection:
        await connection.exec_driver_sql(
            "UPDATE sessions SET revoked_at = CURRENT_TIMESTAMP, revoked_reason = 'operator'"
            f" WHERE id = '{claims['sid']}'"
        )
    assert await check_generation(ctx) is False  # not yet: SQL was seen before the update
    assert await check_generation(ctx) is True
    assert await _me(client, token) == 401


async def test_forget_refuses_a_restore_begun_before_it(app: FastAPI) -> None:
    # A restore whose ticket predates the detected loss may have read SQL before the lost
    # commits: it must not put the epoch back over an incomplete state.
    store = app.state.services.revocations
    ticket = await store.begin_seed()
    await store.forget()
    assert await store.seed(SeedData(ticket=ticket)) is False
    assert (await store.status(token_id="-", session_id="-", user_id="-")).seeded is False
    fresh = await store.begin_seed()
    assert await store.seed(SeedData(ticket=fresh, generation=7)) is True
    assert (await store.status(token_id="-", session_id="-", user_id="-")).seeded is True
    assert await store.generation() == 7

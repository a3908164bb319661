"""A revoked access token's denylist entry lives as long as the token could be accepted.

That is its remaining lifetime plus the clock leeway (900 + 10 s for a fresh token by
default), not a whole token horizon more; the same on the write and the reseed path.
"""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from redis import asyncio as redis_asyncio

from auth_service.app import REVOCATION_CHANGE_MARKER
from auth_service.config import Settings
from auth_service.stores.revocation import MemoryStore, announce_change
from tests.conftest import Backend, delete_keys, password_grant, register
from tests.test_redis_faults import claims

TTL = 900
LEEWAY = 10


async def entry_seconds_left(app: FastAPI, backend: Backend, key: str) -> float:
    """How long the store keeps `key` (without the prefix), whatever the backend."""
    store = app.state.services.revocations
    if isinstance(store, MemoryStore):
        # The store has no public TTL; it counts on the app's (injected) clock.
        left: float = store._entries[key][1] - app.state.services.clock().timestamp()
        return left
    assert backend.redis_url is not None
    client = redis_asyncio.Redis.from_url(backend.redis_url)
    try:
        milliseconds = await client.pttl(backend.redis_prefix + key)
    finally:
        await client.aclose()
    assert milliseconds > 0, f"{key} is not in Redis with a TTL ({milliseconds})"
    return milliseconds / 1000


async def wipe_store(app: FastAPI, backend: Backend, settings: Settings) -> None:
    """Lose every entry so the next check reseeds from SQL."""
    store = app.state.services.revocations
    if isinstance(store, MemoryStore):
        store._entries.clear()  # as if the process restarted
        announce_change(settings.data_dir / REVOCATION_CHANGE_MARKER)
    else:
        assert backend.redis_url is not None
        await delete_keys(backend.redis_url, backend.redis_prefix)


async def test_a_revoked_access_token_is_denied_until_it_expires_and_no_longer(
    app: FastAPI, client: httpx.AsyncClient, backend: Backend, settings: Settings
) -> None:
    assert settings.access_token_ttl_seconds == TTL
    assert settings.clock_leeway_seconds == LEEWAY
    await register(client)
    grants = [(await password_grant(client)).json() for _ in range(2)]
    revoked, live = grants[0]["access_token"], grants[1]["access_token"]
    response = await client.post("/revoke", data={"token": revoked})
    assert response.status_code == 200, response.text
    key = f"revoked-token:{claims(revoked)['jti']}"

    left = await entry_seconds_left(app, backend, key)
    assert TTL <= left <= TTL + LEEWAY + 1, left

    await wipe_store(app, backend, settings)
    checked = await client.get("/users/me", headers={"Authorization": f"Bearer {live}"})
    assert checked.status_code == 200, checked.text  # this check reseeded from SQL
    left = await entry_seconds_left(app, backend, key)
    assert TTL <= left <= TTL + LEEWAY + 1, left
    refused = await client.get("/users/me", headers={"Authorization": f"Bearer {revoked}"})
    assert refused.status_code == 401, refused.text

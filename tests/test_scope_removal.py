"""Taking a scope from a user ends, at once, every session (and its tokens) holding it.

Sessions whose scope lies within the new set are untouched. The same from the service,
from the command line beside a running app, and on both backends.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from auth_service.cli import main
from auth_service.config import Settings
from auth_service.services.accounts import set_scopes
from tests.conftest import TEST_ARGON2, register
from tests.test_clients import add_client, basic, token_request

ALL = frozenset({"profile", "admin"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def set_scopes_by_cli(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, username: str, *scopes: str
) -> None:
    """`auth-service users set-scopes` against the app's database and store."""
    env = {
        "AUTH_ENVIRONMENT": "test",
        "AUTH_DATABASE_URL": settings.effective_database_url,
        "AUTH_DATA_DIR": str(settings.data_dir),
        "AUTH_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        **{f"AUTH_{name.upper()}": str(value) for name, value in TEST_ARGON2.items()},
    }
    if settings.redis_url is not None:
        env["AUTH_REDIS_URL"] = settings.redis_url
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # main() runs its own event loop: give it a thread of its own.
    assert await asyncio.to_thread(main, ["users", "set-scopes", username, *scopes]) == 0


@pytest.mark.parametrize("via", ["service", "cli"])
async def test_removing_a_scope_ends_the_sessions_that_hold_it(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    via: str,
) -> None:
    await register(client, "alice")
    await register(client, "mallory")
    assert await set_scopes(app.state.services, "alice", ALL)
    admin = (await token_request(client, scope="profile admin")).json()
    plain = (await token_request(client, scope="profile")).json()
    secret = await add_client(app, "resource-server", grants=(), introspection=True)
    assert secret is not None
    assert (await client.get("/users/me", headers=bearer(admin["access_token"]))).status_code == 200

    if via == "service":
        assert await set_scopes(app.state.services, "alice", frozenset({"profile"}))
    else:
        await set_scopes_by_cli(settings, monkeypatch, "alice", "profile")

    # The admin session is over: its access token, its refresh token, introspection.
    disable = await client.post(
        "/admin/users/mallory/disable", headers=bearer(admin["access_token"])
    )
    assert disable.status_code == 401, disable.text
    me = await client.get("/users/me", headers=bearer(admin["access_token"]))
    assert me.status_code == 401, me.text
    described = await client.post(
        "/introspect",
        data={"token": admin["access_token"]},
        headers=basic("resource-server", secret),
    )
    assert described.json() == {"active": False}
    renewed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": admin["refresh_token"]}
    )
    assert renewed.status_code == 400, renewed.text
    # The profile-only session keeps working, and may still be refreshed.
    assert (await client.get("/users/me", headers=bearer(plain["access_token"]))).status_code == 200
    kept = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": plain["refresh_token"]}
    )
    assert kept.status_code == 200, kept.text
    # Logins now get only what is left.
    assert (await token_request(client, scope="admin")).status_code == 400


async def test_adding_a_scope_ends_no_session(app: FastAPI, client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    plain = (await token_request(client, scope="profile")).json()
    assert await set_scopes(app.state.services, "alice", ALL)
    assert (await client.get("/users/me", headers=bearer(plain["access_token"]))).status_code == 200


async def test_a_login_in_flight_across_a_scope_removal_gets_no_wider_token(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = app.state.services
    await register(client, "alice")
    assert await set_scopes(ctx, "alice", ALL)
    verify = ctx.hasher.verify
    raced = False

    async def verify_then_remove_admin(*args: Any, **kwargs: Any) -> Any:
        nonlocal raced
        result = await verify(*args, **kwargs)  # the user's scopes were read before this
        if not raced:
            raced = True
            assert await set_scopes(ctx, "alice", frozenset({"profile"}))
        return result

    monkeypatch.setattr(ctx.hasher, "verify", verify_then_remove_admin)
    response = await token_request(client, scope="profile admin")
    assert raced
    if response.status_code == 200:
        token = response.json()["access_token"]
        used = await client.get("/users/me", headers=bearer(token))
        assert used.status_code == 401, f"a token minted with a removed scope works: {used.text}"
    else:
        assert response.status_code == 400, response.text
        assert response.json()["error"] == "invalid_grant"

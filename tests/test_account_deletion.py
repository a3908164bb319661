"""DELETE /users/me: the account and its personal data go, every session ends, the name is held."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from auth_service.errors import InvalidToken, UserDeletionRefused
from auth_service.services import user_admin
from auth_service.services.account_deletion import purge_deleted_accounts
from auth_service.services.context import ServiceContext
from auth_service.services.housekeeping import sweep_expired
from auth_service.services.revocation import ensure_not_revoked
from tests.conftest import (
    PASSWORD,
    FakeClock,
    delete_keys,
    direct_sql,
    password_grant,
    register,
)
from tests.mfa_helpers import bearer, enrolled_user, login

HOLD = 7200


async def delete_me(
    client: httpx.AsyncClient, token: str, password: str = PASSWORD
) -> httpx.Response:
    return await client.request(
        "DELETE", "/users/me", json={"password": password}, headers=bearer(token)
    )


async def test_deletion_needs_the_password(client: httpx.AsyncClient) -> None:
    await register(client)
    tokens = await login(client)
    refused = await delete_me(client, tokens["access_token"], password="not my password at all")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_current_password"
    assert (
        await client.get("/users/me", headers=bearer(tokens["access_token"]))
    ).status_code == 200


async def test_deletion_ends_every_session_and_token(client: httpx.AsyncClient) -> None:
    await register(client)
    first = await login(client)
    second = await login(client)
    assert (await delete_me(client, first["access_token"])).status_code == 204
    for tokens in (first, second):
        me = await client.get("/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401
        refreshed = await client.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 400
    again = await password_grant(client)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


async def test_revocation_of_a_deleted_account_survives_a_reseed(
    client: httpx.AsyncClient, app: FastAPI
) -> None:
    await register(client)
    tokens = await login(client)
    assert (await delete_me(client, tokens["access_token"])).status_code == 204
    ctx = app.state.services
    settings = app.state.settings
    # The store forgets everything (a flush, a restart)...
    if settings.redis_url:
        await delete_keys(settings.redis_url, settings.redis_key_prefix)
    else:
        ctx.revocations._entries.clear()
        ctx.revocations._seeded_generation = -1
    claims = ctx.tokens.verify_access_token(tokens["access_token"])
    # ...and is rebuilt from SQL, where the deleted user's row keeps its token cut-off.
    with pytest.raises(InvalidToken):
        await ensure_not_revoked(ctx, claims)


async def test_personal_data_is_erased_and_the_second_factor_removed(
    client: httpx.AsyncClient, app: FastAPI, clock: FakeClock
) -> None:
    _, _, tokens = await enrolled_user(client, clock)
    assert (await delete_me(client, tokens["access_token"])).status_code == 204
    async with direct_sql(app) as sql:
        user = (
            await sql.execute(
                text("SELECT password_hash, scopes, deleted_at, is_active FROM users")
            )
        ).one()
        origins = (await sql.execute(text("SELECT last_ip, last_user_agent FROM sessions"))).all()
        factors = (await sql.execute(text("SELECT count(*) FROM mfa_totp_factors"))).scalar()
        codes = (await sql.execute(text("SELECT count(*) FROM mfa_recovery_codes"))).scalar()
    assert not user.password_hash.startswith("$argon2")
    assert user.scopes == ""
    assert user.deleted_at is not None
    assert not user.is_active
    assert origins
    assert all(row == (None, None) for row in origins)
    assert (factors, codes) == (0, 0)


async def _swept_accounts(ctx: ServiceContext) -> int:
    return (await sweep_expired(ctx)).deleted_accounts


@pytest.mark.settings(deleted_username_hold_seconds=HOLD)
@pytest.mark.parametrize("purge", [purge_deleted_accounts, _swept_accounts], ids=["cli", "sweep"])
async def test_the_username_is_held_then_freed(
    client: httpx.AsyncClient,
    app: FastAPI,
    clock: FakeClock,
    purge: Callable[[ServiceContext], Awaitable[int]],
) -> None:
    """`users purge-deleted` and the hourly housekeeping free the name after the hold."""
    await register(client, "alice")
    tokens = await login(client)
    assert (await delete_me(client, tokens["access_token"])).status_code == 204
    for name in ("alice", "ALICE"):
        taken = await client.post("/register", json={"username": name, "password": PASSWORD})
        assert taken.status_code == 409
    ctx = app.state.services
    assert await user_admin.enable(ctx, "alice") is False  # deleted: not to be revived
    with pytest.raises(UserDeletionRefused):
        await user_admin.delete(ctx, "alice")
    clock.advance(HOLD - 60)
    assert await purge(ctx) == 0
    clock.advance(120)
    assert await purge(ctx) == 1
    assert (
        await client.post("/register", json={"username": "alice", "password": PASSWORD})
    ).status_code == 201


def test_the_hold_must_outlast_the_access_tokens(tmp_path: object) -> None:
    from pydantic import ValidationError

    from auth_service.config import Settings

    with pytest.raises(ValidationError, match="AUTH_DELETED_USERNAME_HOLD_SECONDS"):
        Settings(_env_file=None, access_token_ttl_seconds=900, deleted_username_hold_seconds=600)

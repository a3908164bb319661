"""ID tokens for scope `email` state the address and whether it is verified (OIDC Core
§5.4), as UserInfo does; without the scope, neither."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from tests.conftest import PASSWORD, direct_sql
from tests.oidc_helpers import (
    RelyingParty,
    add_client,
    authorize,
    authorize_params,
    exchange,
    verify_id_token,
)


async def _id_token(client: httpx.AsyncClient, rp: RelyingParty, scope: str) -> dict[str, Any]:
    callback = await authorize(client, rp, authorize_params(rp, scope=scope))
    body = (await exchange(client, rp, callback["code"])).json()
    return await verify_id_token(client, body["id_token"], rp)


async def test_scope_email_puts_the_address_and_its_state_in_the_id_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    registered = await client.post(
        "/register",
        json={"username": "alice", "password": PASSWORD, "email": "Alice@Example.com"},
    )
    assert registered.status_code == 201, registered.text
    rp = await add_client(app)
    claims = await _id_token(client, rp, "openid email")
    assert (claims["email"], claims["email_verified"]) == ("Alice@example.com", False)
    async with direct_sql(app) as sql:
        await sql.execute(text("UPDATE users SET email_verified = true"))
    client.cookies.clear()
    claims = await _id_token(client, rp, "openid email")
    assert (claims["email"], claims["email_verified"]) == ("Alice@example.com", True)
    client.cookies.clear()
    without = await _id_token(client, rp, "openid profile")
    assert "email" not in without
    assert "email_verified" not in without


async def test_scope_email_without_an_address_carries_no_email_claims(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await client.post("/register", json={"username": "alice", "password": PASSWORD})
    rp = await add_client(app)
    claims = await _id_token(client, rp, "openid email")
    assert "email" not in claims
    assert "email_verified" not in claims

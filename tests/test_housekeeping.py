"""Housekeeping deletes what expired a retention period ago, and nothing a check still reads.

The rows come from the real flows (a code flow through the login page, a password grant, a
logout, an abandoned authorization request); the clock is moved, never slept.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from auth_service.repositories import EmailTokenRow, MfaTokenRow
from auth_service.repositories.sql_expiry import PURGE_BATCH
from auth_service.services.context import ServiceContext
from auth_service.services.housekeeping import (
    RETENTION_BEYOND_TOKENS,
    Housekeeper,
    Swept,
    sweep_expired,
)
from tests.conftest import FakeClock, direct_sql, password_grant, register
from tests.oidc_helpers import RelyingParty, add_client, authorize, authorize_params, exchange

_TABLES = (
    "email_tokens",
    "authorization_requests",
    "authorization_codes",
    "browser_sessions",
    "sessions",
    "refresh_tokens",
    "mfa_tokens",
    "revoked_access_tokens",
)


async def _counts(app: FastAPI) -> dict[str, int]:
    async with direct_sql(app) as connection:
        return {
            table: (await connection.execute(text(f"SELECT count(*) FROM {table}"))).scalar_one()
            for table in _TABLES
        }


def _retention(ctx: ServiceContext) -> timedelta:
    return ctx.session_policy.access_token_horizon + RETENTION_BEYOND_TOKENS


async def _code_flow(
    app: FastAPI, client: httpx.AsyncClient
) -> tuple[RelyingParty, dict[str, str]]:
    """Log in through the login page, spend the code; the token response."""
    rp = await add_client(app)
    callback = await authorize(client, rp, authorize_params(rp))
    response = await exchange(client, rp, callback["code"])
    assert response.status_code == 200, response.text
    return rp, response.json()


async def _abandon_an_authorization_request(
    app: FastAPI, client: httpx.AsyncClient, rp: RelyingParty
) -> None:
    """A browser without a session starts a login and never finishes it."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=client.base_url) as other:
        started = await other.get("/authorize", params=authorize_params(rp))
        assert started.status_code in (302, 303)


async def test_a_sweep_right_after_the_flows_deletes_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    rp, _ = await _code_flow(app, client)
    await _abandon_an_authorization_request(app, client, rp)
    before = await _counts(app)
    assert before["authorization_codes"] == 1
    assert before["authorization_requests"] >= 1
    swept = await sweep_expired(app.state.services)
    assert swept.total == 0
    assert await _counts(app) == before


async def test_a_spent_code_stays_until_the_retention_ends_so_a_replay_still_revokes(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await register(client)
    rp = await add_client(app)
    callback = await authorize(client, rp, authorize_params(rp))
    first = await exchange(client, rp, callback["code"])
    assert first.status_code == 200
    clock.advance(3600)  # the code expired an hour ago: inside the retention period
    await sweep_expired(app.state.services)
    replay = await exchange(client, rp, callback["code"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    refreshed = await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": first.json()["refresh_token"]}
        | rp.auth(),
    )
    assert refreshed.status_code == 400, "the replay must have revoked the code's session"


async def test_a_sweep_after_the_retention_deletes_every_expired_row(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    ctx: ServiceContext = app.state.services
    user = await register(client)
    rp, code_tokens = await _code_flow(app, client)
    await _abandon_an_authorization_request(app, client, rp)
    password_tokens = (await password_grant(client)).json()
    revoked = await client.post(
        "/logout", headers={"Authorization": f"Bearer {password_tokens['access_token']}"}
    )
    assert revoked.status_code == 204
    await ctx.db.revocations.record_access_token(
        jti="gone", expires_at=clock() + timedelta(minutes=15), now=clock()
    )
    await ctx.db.mfa.add_token(
        "f" * 64,
        row=MfaTokenRow(user["id"], rp.client_id, None, 0),
        expires_at=clock() + timedelta(minutes=5),
        now=clock(),
    )
    await ctx.db.email_tokens.issue(
        EmailTokenRow("e" * 64, "verify", user["id"], None, 0, clock(), clock() + timedelta(days=1))
    )
    assert code_tokens["refresh_token"]
    # Past the code-flow session's absolute lifetime (so the browser session has no open
    # session left), plus the retention.
    clock.advance((ctx.session_policy.absolute_lifetime + _retention(ctx)).total_seconds() + 60)
    swept = await sweep_expired(ctx)
    assert swept.authorizations >= 2  # the code and the abandoned request
    assert swept.browser_sessions == 1
    assert swept.sessions == 2
    assert swept.mfa_tokens == 1
    assert swept.email_tokens == 1
    assert swept.revoked_access_tokens == 1
    assert await _counts(app) == dict.fromkeys(_TABLES, 0)  # refresh tokens went with sessions
    purged = ctx.audit.registry.get_sample_value("auth_purged_rows_total", {"kind": "sessions"})
    assert purged == 2


async def test_a_browser_session_stays_while_a_session_opened_through_it_is_open(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    ctx: ServiceContext = app.state.services
    await register(client)
    rp, tokens = await _code_flow(app, client)
    # The browser session expired long ago; its refresh family is still open (refreshed).
    clock.advance((ctx.browser_session_lifetime + _retention(ctx)).total_seconds() + 60)
    refreshed = await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]} | rp.auth(),
    )
    assert refreshed.status_code == 200, refreshed.text
    swept = await sweep_expired(ctx)
    assert swept.browser_sessions == 0
    assert swept.sessions == 0
    assert swept.authorizations == 1  # the spent code
    assert (await _counts(app))["browser_sessions"] == 1
    # Once that session is ended the browser session can go; the session itself stays
    # until its revocation is older than the retention (a reseed may still need it).
    ended = await client.post(
        "/logout", headers={"Authorization": f"Bearer {refreshed.json()['access_token']}"}
    )
    assert ended.status_code == 204
    swept = await sweep_expired(ctx)
    assert (swept.browser_sessions, swept.sessions) == (1, 0)
    clock.advance(_retention(ctx).total_seconds() + 60)
    assert (await sweep_expired(ctx)).sessions == 1


async def test_a_sweep_deletes_more_rows_than_one_batch(app: FastAPI, clock: FakeClock) -> None:
    ctx: ServiceContext = app.state.services
    many = 2 * PURGE_BATCH + 7
    expired = clock() - _retention(ctx) - timedelta(minutes=1)
    async with direct_sql(app) as connection:
        await connection.execute(
            text(
                "INSERT INTO revoked_access_tokens (jti, expires_at, revoked_at) "
                "VALUES (:jti, :expires, :expires)"
            ),
            [{"jti": f"jti-{n}", "expires": expired} for n in range(many)],
        )
    swept = await sweep_expired(ctx)
    assert swept == Swept(0, 0, 0, 0, 0, many, 0)
    assert (await _counts(app))["revoked_access_tokens"] == 0


async def test_the_housekeeper_sweeps_on_its_own_until_cancelled(
    app: FastAPI, clock: FakeClock
) -> None:
    ctx: ServiceContext = app.state.services
    await ctx.db.revocations.record_access_token(
        jti="old", expires_at=clock() - _retention(ctx) - timedelta(minutes=1), now=clock()
    )
    task = asyncio.create_task(Housekeeper(ctx, timedelta(milliseconds=20)).run())
    try:
        for _ in range(500):
            if (await _counts(app))["revoked_access_tokens"] == 0:
                break
            await asyncio.sleep(0.01)
        assert (await _counts(app))["revoked_access_tokens"] == 0
        assert not task.done()
    finally:
        task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

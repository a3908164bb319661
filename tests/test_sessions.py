"""Sessions: refresh rotation, reuse detection, logout, revocation, session management."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import select

from auth_service.app import create_app
from auth_service.config import Settings
from auth_service.models import RefreshToken
from auth_service.services.accounts import disable
from tests.conftest import (
    PASSWORD,
    TEST_ISSUER,
    Backend,
    FakeClock,
    delete_keys,
    orm_session,
    password_grant,
    register,
)


async def login(
    client: httpx.AsyncClient, username: str = "alice", **headers: str
) -> dict[str, Any]:
    response = await client.post(
        "/token",
        data={"grant_type": "password", "username": username, "password": PASSWORD},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(client: httpx.AsyncClient, refresh_token: str, **extra: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, **extra}
    return await client.post("/token", data=form)


async def me(client: httpx.AsyncClient, access_token: str) -> httpx.Response:
    return await client.get("/users/me", headers={"Authorization": f"Bearer {access_token}"})


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


def assert_revoked(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_password_grant_opens_a_session_and_refresh_rotates_it(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    first = await login(client)
    assert len(first["refresh_token"]) >= 43
    second = await refresh(client, first["refresh_token"])
    assert second.status_code == 200
    assert second.headers["cache-control"] == "no-store"
    body = second.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert (await me(client, body["access_token"])).status_code == 200
    third = await refresh(client, body["refresh_token"])
    assert third.status_code == 200


async def test_refresh_tokens_are_stored_only_as_hashes(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    tokens = await login(client)
    async with orm_session(app) as db:
        stored = (await db.execute(select(RefreshToken))).scalars().all()
    assert len(stored) == 1
    assert stored[0].token_hash != tokens["refresh_token"]
    assert tokens["refresh_token"] not in stored[0].token_hash


@pytest.mark.settings(refresh_reuse_grace_seconds=0)
async def test_reuse_revokes_the_whole_session(client: httpx.AsyncClient) -> None:
    await register(client)
    first = await login(client)
    other_session = await login(client)
    rotated = (await refresh(client, first["refresh_token"])).json()

    assert_invalid_grant(await refresh(client, first["refresh_token"]))

    # The successor and every access token of that session die with it ...
    assert_invalid_grant(await refresh(client, rotated["refresh_token"]))
    assert_revoked(await me(client, rotated["access_token"]))
    assert_revoked(await me(client, first["access_token"]))
    # ... but the user's other session is untouched.
    assert (await me(client, other_session["access_token"])).status_code == 200
    assert (await refresh(client, other_session["refresh_token"])).status_code == 200


async def test_repeat_within_grace_returns_the_same_pair(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await register(client)
    first = await login(client)
    rotated = (await refresh(client, first["refresh_token"])).json()
    clock.advance(9)
    repeated = await refresh(client, first["refresh_token"])
    assert repeated.status_code == 200
    assert repeated.json() == rotated
    assert (await me(client, rotated["access_token"])).status_code == 200


async def test_repeat_after_grace_is_theft(client: httpx.AsyncClient, clock: FakeClock) -> None:
    await register(client)
    first = await login(client)
    rotated = (await refresh(client, first["refresh_token"])).json()
    clock.advance(11)
    assert_invalid_grant(await refresh(client, first["refresh_token"]))
    assert_revoked(await me(client, rotated["access_token"]))
    assert_invalid_grant(await refresh(client, rotated["refresh_token"]))


async def test_concurrent_refreshes_in_grace_mode_share_one_successor(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    first = await login(client)
    responses = await asyncio.gather(*(refresh(client, first["refresh_token"]) for _ in range(20)))
    assert [r.status_code for r in responses] == [200] * 20
    successors = {r.json()["refresh_token"] for r in responses}
    assert len(successors) == 1
    (successor,) = successors
    assert (await refresh(client, successor)).status_code == 200


@pytest.mark.settings(refresh_reuse_grace_seconds=0)
async def test_concurrent_refreshes_in_strict_mode_have_one_winner(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    first = await login(client)
    responses = await asyncio.gather(*(refresh(client, first["refresh_token"]) for _ in range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * 19
    winner = next(r.json() for r in responses if r.status_code == 200)
    # Exactly one successor was ever recorded ...
    async with orm_session(app) as db:
        rows = (await db.execute(select(RefreshToken))).scalars().all()
    assert len(rows) == 2
    # ... and the 19 repeats were reuse, so the session is gone.
    assert_invalid_grant(await refresh(client, winner["refresh_token"]))
    assert_revoked(await me(client, winner["access_token"]))


async def test_refresh_and_access_tokens_are_not_interchangeable(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    tokens = await login(client)
    assert_revoked(await me(client, tokens["refresh_token"]))
    assert_invalid_grant(await refresh(client, tokens["access_token"]))
    # Neither attempt harmed the session.
    assert (await refresh(client, tokens["refresh_token"])).status_code == 200


async def test_unknown_and_malformed_refresh_tokens_are_invalid_grant(
    client: httpx.AsyncClient,
) -> None:
    for token in ("nope", "x" * 300, "a.b.c", "%00"):
        assert_invalid_grant(await refresh(client, token))
    response = await client.post("/token", data={"grant_type": "refresh_token"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_refresh_may_narrow_but_not_widen_scope(client: httpx.AsyncClient) -> None:
    await register(client)
    tokens = await login(client)
    narrowed = await refresh(client, tokens["refresh_token"], scope="profile")
    assert narrowed.status_code == 200
    assert narrowed.json()["scope"] == "profile"
    widened = await refresh(client, narrowed.json()["refresh_token"], scope="profile admin")
    assert widened.status_code == 400
    assert widened.json()["error"] == "invalid_scope"


async def test_idle_timeout_and_absolute_lifetime(
    client: httpx.AsyncClient, clock: FakeClock, settings: Any
) -> None:
    await register(client)
    idle = settings.session_idle_timeout_seconds
    tokens = await login(client)
    clock.advance(idle + 1)
    assert_invalid_grant(await refresh(client, tokens["refresh_token"]))

    # Refreshing within the idle timeout keeps a session alive, up to its absolute lifetime.
    tokens = await login(client)
    elapsed = 0
    while elapsed + idle - 60 < settings.session_absolute_lifetime_seconds:
        clock.advance(idle - 60)
        elapsed += idle - 60
        response = await refresh(client, tokens["refresh_token"])
        if elapsed < settings.session_absolute_lifetime_seconds:
            assert response.status_code == 200, elapsed
            tokens = response.json()
    clock.advance(idle - 60)
    assert_invalid_grant(await refresh(client, tokens["refresh_token"]))


async def test_logout_kills_the_session_everywhere(client: httpx.AsyncClient) -> None:
    await register(client)
    tokens = await login(client)
    other = await login(client)
    response = await client.post("/logout", headers=bearer(tokens))
    assert response.status_code == 204
    assert_revoked(await me(client, tokens["access_token"]))
    assert_invalid_grant(await refresh(client, tokens["refresh_token"]))
    assert (await me(client, other["access_token"])).status_code == 200
    # Logging out twice: the token is already dead.
    assert_revoked(await client.post("/logout", headers=bearer(tokens)))


async def test_logout_others_and_global(client: httpx.AsyncClient) -> None:
    await register(client)
    one, two, three = [await login(client) for _ in range(3)]
    assert (await client.post("/logout?scope=others", headers=bearer(one))).status_code == 204
    assert (await me(client, one["access_token"])).status_code == 200
    assert_revoked(await me(client, two["access_token"]))
    assert_revoked(await me(client, three["access_token"]))
    assert (await client.post("/logout?scope=global", headers=bearer(one))).status_code == 204
    assert_revoked(await me(client, one["access_token"]))
    fresh = await login(client)
    bad = await client.post("/logout?scope=planet", headers=bearer(fresh))
    assert bad.status_code == 422
    assert (await me(client, fresh["access_token"])).status_code == 200  # nothing revoked


async def test_logout_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post("/logout")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="auth_service"'


async def test_revoke_refresh_token_ends_its_session(client: httpx.AsyncClient) -> None:
    await register(client)
    tokens = await login(client)
    response = await client.post(
        "/revoke", data={"token": tokens["refresh_token"], "token_type_hint": "refresh_token"}
    )
    assert response.status_code == 200
    assert response.content == b""
    assert_invalid_grant(await refresh(client, tokens["refresh_token"]))
    assert_revoked(await me(client, tokens["access_token"]))


async def test_revoke_access_token_kills_only_that_token(client: httpx.AsyncClient) -> None:
    await register(client)
    tokens = await login(client)
    # The hint is honoured but not trusted: a wrong hint still finds the token.
    response = await client.post(
        "/revoke", data={"token": tokens["access_token"], "token_type_hint": "refresh_token"}
    )
    assert response.status_code == 200
    assert_revoked(await me(client, tokens["access_token"]))
    renewed = await refresh(client, tokens["refresh_token"])
    assert renewed.status_code == 200
    assert (await me(client, renewed.json()["access_token"])).status_code == 200


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "x" * 5000, "é"])
async def test_revoke_unknown_tokens_is_200(client: httpx.AsyncClient, token: str) -> None:
    assert (await client.post("/revoke", data={"token": token})).status_code == 200


async def test_revoke_without_token_is_invalid_request(client: httpx.AsyncClient) -> None:
    response = await client.post("/revoke", data={"token_type_hint": "access_token"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_sessions_are_listed_without_tokens(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await register(client)
    first = await login(client, **{"User-Agent": "phone/1.0"})
    clock.advance(1)
    second = await login(client, **{"User-Agent": "laptop/2.0"})
    response = await client.get("/sessions", headers=bearer(second))
    assert response.status_code == 200
    sessions = response.json()
    assert [s["user_agent"] for s in sessions] == ["laptop/2.0", "phone/1.0"]
    assert [s["current"] for s in sessions] == [True, False]
    assert first["refresh_token"] not in response.text
    assert first["access_token"] not in response.text
    assert set(sessions[0]) == {
        "id",
        "client_id",
        "scope",
        "created_at",
        "last_used_at",
        "last_ip",
        "user_agent",
        "expires_at",
        "current",
    }
    assert {s["last_ip"] for s in sessions} == {"127.0.0.1"}

    # A refresh records the use: time, address and user agent, and pushes the idle expiry.
    clock.advance(60)
    before = sessions[1]
    await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        headers={"User-Agent": "phone/1.1"},
    )
    phone = (await client.get("/sessions", headers=bearer(second))).json()[1]
    assert phone["id"] == before["id"]
    assert phone["user_agent"] == "phone/1.1"
    assert phone["last_used_at"] > before["last_used_at"]
    assert phone["expires_at"] > before["expires_at"]


async def test_delete_own_session_and_not_someone_elses(client: httpx.AsyncClient) -> None:
    await register(client, "alice")
    await register(client, "bob")
    alice_phone = await login(client, "alice")
    alice_laptop = await login(client, "alice")
    bob = await login(client, "bob")
    bob_sessions = (await client.get("/sessions", headers=bearer(bob))).json()
    alice_sessions = (await client.get("/sessions", headers=bearer(alice_laptop))).json()
    phone_id = next(s["id"] for s in alice_sessions if not s["current"])

    # Bob cannot end Alice's session: it looks like it does not exist.
    foreign = await client.delete(f"/sessions/{phone_id}", headers=bearer(bob))
    assert foreign.status_code == 404
    assert (await me(client, alice_phone["access_token"])).status_code == 200
    # Revoking someone else's session through /revoke with a made-up token does nothing.
    await client.post("/revoke", data={"token": bob_sessions[0]["id"]})
    assert (await me(client, bob["access_token"])).status_code == 200

    own = await client.delete(f"/sessions/{phone_id}", headers=bearer(alice_laptop))
    assert own.status_code == 204
    assert_revoked(await me(client, alice_phone["access_token"]))
    assert (await me(client, alice_laptop["access_token"])).status_code == 200


async def test_password_change_ends_every_other_session(client: httpx.AsyncClient) -> None:
    await register(client)
    current = await login(client)
    other = await login(client)
    new_password = "a completely different passphrase"
    response = await client.post(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers=bearer(current),
    )
    assert response.status_code == 204
    assert (await me(client, current["access_token"])).status_code == 200
    assert_revoked(await me(client, other["access_token"]))
    assert_invalid_grant(await refresh(client, other["refresh_token"]))
    assert_invalid_grant(await password_grant(client))
    assert (await password_grant(client, password=new_password)).status_code == 200


async def test_password_change_checks_current_and_policy(client: httpx.AsyncClient) -> None:
    await register(client)
    tokens = await login(client)
    wrong = await client.post(
        "/users/me/password",
        json={"current_password": "not my password at all", "new_password": "another long one!"},
        headers=bearer(tokens),
    )
    assert wrong.status_code == 400
    assert wrong.json()["error"] == "invalid_current_password"
    weak = await client.post(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=bearer(tokens),
    )
    assert weak.status_code == 422
    assert weak.json()["reasons"] == ["password must be at least 15 characters"]
    assert (await password_grant(client)).status_code == 200


async def test_disabled_user_loses_everything(app: FastAPI, client: httpx.AsyncClient) -> None:
    await register(client)
    tokens = await login(client)
    assert await disable(app.state.services, "ALICE") is True
    assert await disable(app.state.services, "nobody-here") is False
    assert_revoked(await me(client, tokens["access_token"]))
    assert_invalid_grant(await refresh(client, tokens["refresh_token"]))
    assert_invalid_grant(await password_grant(client))


async def test_revoked_tokens_stay_revoked_when_the_store_loses_its_data(
    app: FastAPI,
    client: httpx.AsyncClient,
    backend: Backend,
    settings: Settings,
    clock: FakeClock,
) -> None:
    await register(client, "alice")
    await register(client, "bob")
    logged_out = await login(client, "alice")
    alive = await login(client, "alice")
    revoked_alone = await login(client, "alice")
    disabled = await login(client, "bob")
    await client.post("/logout", headers=bearer(logged_out))
    await client.post("/revoke", data={"token": revoked_alone["access_token"]})
    await disable(app.state.services, "bob")

    async def check_still_revoked(http: httpx.AsyncClient) -> None:
        assert_revoked(await me(http, logged_out["access_token"]))
        assert_revoked(await me(http, revoked_alone["access_token"]))
        assert_revoked(await me(http, disabled["access_token"]))
        assert (await me(http, alive["access_token"])).status_code == 200
        assert_invalid_grant(await refresh(http, logged_out["refresh_token"]))

    # Lose every cached revocation: flush the Redis keyspace, or restart the process.
    if backend.redis_url is not None:
        await delete_keys(backend.redis_url, backend.redis_prefix)
        await check_still_revoked(client)
    else:
        restarted = create_app(settings, clock=clock)
        async with LifespanManager(restarted):
            transport = httpx.ASGITransport(app=restarted)
            async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as fresh:
                await check_still_revoked(fresh)

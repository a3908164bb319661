"""Password changes, disables and reuse detection hold under races and store faults.

The races are made deterministic: the logins (or refreshes) in flight are held at a gate
after they authenticated (argon2 done, the user row read) and before they write their
session, the password change or disable runs, then the gate opens. A real clock keeps
running meanwhile, so the fake one is advanced too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from auth_service.cli import main
from auth_service.config import Settings
from auth_service.errors import StoreUnavailable
from auth_service.models import Session
from auth_service.repositories import RefreshFamily
from auth_service.services.accounts import disable, set_scopes
from auth_service.services.context import ServiceContext
from tests.conftest import PASSWORD, TEST_ARGON2, FakeClock, orm_session, password_grant, register

# Concurrent logins held in flight: within the (account, IP) pair limit of 10, since checks
# past it wait for the earlier ones to finish (throttling reserves before argon2).
IN_FLIGHT = 8
NEW_PASSWORD = "a completely different passphrase"


class Gate:
    """Holds the next `count` calls of a coroutine function until opened."""

    def __init__(self, count: int) -> None:
        self.remaining = count
        self.waiting = 0
        self.opened = asyncio.Event()

    def wrap(self, real: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def gated(*args: Any, **kwargs: Any) -> Any:
            result = await real(*args, **kwargs)
            if self.remaining > 0:
                self.remaining -= 1
                self.waiting += 1
                await self.opened.wait()
            return result

        return gated

    async def until_all_waiting(self, count: int) -> None:
        for _ in range(2000):
            if self.waiting >= count:
                return
            await asyncio.sleep(0.005)
        raise AssertionError(f"only {self.waiting} of {count} calls reached the gate")


def services(app: FastAPI) -> ServiceContext:
    ctx: ServiceContext = app.state.services
    return ctx


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await client.post("/token", data=form)


async def gated_logins(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, **form: str
) -> tuple[Gate, asyncio.Future[list[httpx.Response]]]:
    """IN_FLIGHT concurrent correct logins, each held after its password verified."""
    ctx = services(app)
    gate = Gate(IN_FLIGHT)
    monkeypatch.setattr(ctx.hasher, "verify", gate.wrap(ctx.hasher.verify))
    logins = asyncio.gather(*(password_grant(client, **form) for _ in range(IN_FLIGHT)))
    await gate.until_all_waiting(IN_FLIGHT)
    return gate, logins


async def assert_tokens_dead(client: httpx.AsyncClient, grant: dict[str, Any]) -> None:
    """No endpoint accepts the grant's access token and its refresh token is refused."""
    access = bearer(grant["access_token"])
    for response in (
        await client.get("/sessions", headers=access),
        await client.get("/users/me", headers=access),
        await client.post("/admin/users/nobody-here/disable", headers=access),
    ):
        assert response.status_code == 401, response.text
    assert_invalid_grant(await refresh(client, grant["refresh_token"]))


async def test_password_change_ends_logins_in_flight(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    await register(client)
    owner = (await password_grant(client)).json()
    gate, logins = await gated_logins(app, client, monkeypatch)

    changed = await client.post(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(owner["access_token"]),
    )
    assert changed.status_code == 204, changed.text
    clock.advance(2)
    gate.opened.set()
    results = await logins

    for response in results:
        if response.status_code == 200:  # what the old code did: a 30-day session
            assert_invalid_grant(await refresh(client, response.json()["refresh_token"]))
        assert_invalid_grant(response)
    assert (await client.get("/users/me", headers=bearer(owner["access_token"]))).is_success


def cli_environment(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """Point `auth-service` (the command line) at the test app's database and store."""
    for name in (
        "environment",
        "database_url",
        "data_dir",
        "issuer",
        "redis_url",
        "redis_key_prefix",
        "hash_pool_size",
        *TEST_ARGON2,
    ):
        value = getattr(settings, name)
        if value is not None:
            monkeypatch.setenv(f"AUTH_{name.upper()}", str(value))


@pytest.mark.parametrize("via", ["admin_endpoint", "service", "cli"])
async def test_disable_leaves_no_usable_token_in_flight(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    clock: FakeClock,
    via: str,
) -> None:
    ctx = services(app)
    for name in ("root", "ops"):
        await register(client, name)
        await set_scopes(ctx, name, frozenset({"profile", "admin"}))
    scope = {"scope": "profile admin"}
    before = (await password_grant(client, "root", **scope)).json()
    operator = (await password_grant(client, "ops", **scope)).json()

    # A refresh of root's session held after it read the session (still active)...
    family_gate = Gate(1)
    repository = type(ctx.db.sessions)
    monkeypatch.setattr(repository, "find_family", family_gate.wrap(repository.find_family))
    refreshing = asyncio.ensure_future(refresh(client, before["refresh_token"]))
    await family_gate.until_all_waiting(1)
    # ...and many correct logins of root held after their password verified.
    gate, logins = await gated_logins(app, client, monkeypatch, username="root", **scope)

    if via == "admin_endpoint":
        response = await client.post(
            "/admin/users/root/disable", headers=bearer(operator["access_token"])
        )
        assert response.status_code == 204, response.text
    elif via == "cli":
        cli_environment(monkeypatch, settings)
        assert await asyncio.to_thread(main, ["users", "disable", "root"]) == 0
    else:
        assert await disable(ctx, "root") is True
    clock.advance(2)
    gate.opened.set()
    family_gate.opened.set()
    results = await logins
    refreshed = await refreshing

    grants = [before]
    for response in [*results, refreshed]:
        if response.status_code == 200:
            grants.append({**before, **response.json()})
    for grant in grants:
        await assert_tokens_dead(client, grant)
    for response in [*results, refreshed]:
        assert_invalid_grant(response)
    # The operator was not disabled and still works.
    assert (await client.get("/sessions", headers=bearer(operator["access_token"]))).is_success


def fail_once(monkeypatch: pytest.MonkeyPatch, target: object, name: str) -> list[int]:
    """Make `target.name` raise StoreUnavailable on its next call; returns the call log."""
    real = getattr(target, name)
    calls: list[int] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise StoreUnavailable
        return await real(*args, **kwargs)

    monkeypatch.setattr(target, name, flaky)
    return calls


async def test_password_change_with_a_store_fault_is_all_or_nothing(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(client)
    owner = (await password_grant(client)).json()
    attacker = (await password_grant(client)).json()
    calls = fail_once(monkeypatch, services(app).revocations, "revoke_sessions")
    body = {"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    headers = bearer(owner["access_token"])

    failed = await client.post("/users/me/password", json=body, headers=headers)
    assert failed.status_code == 503, failed.text
    assert calls, "the fault was not reached"
    # Nothing happened: the old password still opens a session.
    assert (await password_grant(client)).status_code == 200

    # The retry with the same body succeeds and ends the attacker's session.
    retried = await client.post("/users/me/password", json=body, headers=headers)
    assert retried.status_code == 204, retried.text
    assert (
        await client.get("/users/me", headers=bearer(attacker["access_token"]))
    ).status_code == 401
    assert_invalid_grant(await refresh(client, attacker["refresh_token"]))
    assert_invalid_grant(await password_grant(client))
    assert (await password_grant(client, password=NEW_PASSWORD)).status_code == 200


@pytest.mark.settings(refresh_reuse_grace_seconds=0)
async def test_reuse_detected_while_the_store_fails_is_recorded_in_sql(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await register(client)
    victim = (await password_grant(client)).json()
    thief = (await refresh(client, victim["refresh_token"])).json()
    calls = fail_once(monkeypatch, services(app).revocations, "revoke_sessions")

    replay = await refresh(client, victim["refresh_token"])
    assert calls, "the fault was not reached"
    assert_invalid_grant(replay)
    async with orm_session(app) as db:
        reason = await db.scalar(select(Session.revoked_reason))
    assert reason == "refresh_token_reuse"

    # The store works again: the thief's family is dead, refresh and access token alike.
    assert_invalid_grant(await refresh(client, thief["refresh_token"]))
    assert (await client.get("/users/me", headers=bearer(thief["access_token"]))).status_code == 401


async def test_refresh_checks_the_user_atomically(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh that read the session before a disable does not rotate after it."""
    await register(client)
    grant = (await password_grant(client)).json()
    seen: list[RefreshFamily] = []
    repository = type(services(app).db.sessions)
    real = repository.find_family

    async def read_then_disable(*args: Any, **kwargs: Any) -> RefreshFamily | None:
        found = await real(*args, **kwargs)
        if not seen and found is not None:
            seen.append(found)
            async with services(app).db.transaction() as tx:
                await tx.users.disable(found.session.user_id, now=services(app).clock())
        return found

    monkeypatch.setattr(repository, "find_family", read_then_disable)
    assert_invalid_grant(await refresh(client, grant["refresh_token"]))

"""The login page's second step: a TOTP (or recovery) code after the password for a user
with a confirmed factor, and what the code flow's tokens then say about the login."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from tests.conftest import PASSWORD, FakeClock, register
from tests.mfa_helpers import claims_of, code_at, enrolled_user
from tests.oidc_helpers import (
    RelyingParty,
    add_client,
    authorize,
    authorize_params,
    csrf_token,
    exchange,
    verify_id_token,
)


async def _code_page(client: httpx.AsyncClient, rp: RelyingParty) -> tuple[str, str]:
    """Run /authorize and the password step; (the code form's URL, its page)."""
    response = await client.get("/authorize", params=authorize_params(rp))
    login = response.headers["location"]
    page = await client.get(login)
    form = {"csrf_token": csrf_token(page.text), "username": "alice", "password": PASSWORD}
    step = await client.post(login, data=form)
    assert step.status_code == 303, step.text
    location = step.headers["location"]
    assert location.startswith("/login/code?request=")
    assert "auth_session" not in step.headers.get("set-cookie", "")  # no session yet
    shown = await client.get(location)
    assert shown.status_code == 200, shown.text
    return location, shown.text


async def test_password_then_code_signs_in_and_tokens_say_otp_mfa(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    rp = await add_client(app)
    pages: list[str] = []
    callback = await authorize(
        client, rp, authorize_params(rp), code=code_at(secret, clock()), pages=pages
    )
    assert pages == ["login", "code"]
    body = (await exchange(client, rp, callback["code"])).json()
    claims = await verify_id_token(client, body["id_token"], rp)
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["acr"] == "urn:auth-service:acr:mfa"
    access = claims_of(body["access_token"])
    assert access["amr"] == ["pwd", "otp", "mfa"]
    assert access["acr"] == "urn:auth-service:acr:mfa"


async def test_a_password_only_login_says_pwd_and_the_password_acr(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client, "alice")
    rp = await add_client(app)
    pages: list[str] = []
    callback = await authorize(client, rp, authorize_params(rp), pages=pages)
    assert pages == ["login"]
    body = (await exchange(client, rp, callback["code"])).json()
    claims = await verify_id_token(client, body["id_token"], rp)
    assert claims["amr"] == ["pwd"]
    assert claims["acr"] == "urn:auth-service:acr:password"
    access = claims_of(body["access_token"])
    assert (access["amr"], access["acr"]) == (["pwd"], "urn:auth-service:acr:password")


async def test_a_recovery_code_says_pwd_mfa(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    _, recovery, _ = await enrolled_user(client, clock)
    rp = await add_client(app)
    callback = await authorize(client, rp, authorize_params(rp), code=recovery[0])
    body = (await exchange(client, rp, callback["code"])).json()
    claims = await verify_id_token(client, body["id_token"], rp)
    assert claims["amr"] == ["pwd", "mfa"]
    assert claims["acr"] == "urn:auth-service:acr:mfa"


async def test_the_code_page_has_a_code_input_and_the_page_rules(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await enrolled_user(client, clock)
    rp = await add_client(app)
    location, page = await _code_page(client, rp)
    assert 'name="code"' in page
    shown = await client.get(location)
    assert shown.headers["cache-control"] == "no-store"
    assert shown.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in shown.headers["content-security-policy"]


async def test_a_wrong_or_reused_code_is_refused_without_a_session(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    rp = await add_client(app)
    location, page = await _code_page(client, rp)
    code = code_at(secret, clock())
    # No code of the accepted steps (-1, 0, +1): a wrong one for certain.
    accepted = {code_at(secret, clock(), steps) for steps in (-1, 0, 1)}
    bad = next(c for c in (f"{n:06d}" for n in range(4)) if c not in accepted)
    wrong = await client.post(location, data={"csrf_token": csrf_token(page), "code": bad})
    assert wrong.status_code == 401
    assert "auth_session" not in wrong.headers.get("set-cookie", "")
    right = await client.post(location, data={"csrf_token": csrf_token(wrong.text), "code": code})
    assert right.status_code == 303
    assert right.headers["location"].startswith("/authorize/resume")
    # The same code in a second login is spent.
    client.cookies.clear()
    location, page = await _code_page(client, rp)
    again = await client.post(location, data={"csrf_token": csrf_token(page), "code": code})
    assert again.status_code == 401


async def test_the_code_step_needs_csrf_and_the_browser_that_passed_the_password(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    rp = await add_client(app)
    location, _ = await _code_page(client, rp)
    code = code_at(secret, clock())
    no_csrf = await client.post(location, data={"code": code})
    assert no_csrf.status_code == 403
    # Another browser with the request id (and its own CSRF token) is sent to the login.
    async with httpx.AsyncClient(
        transport=client._transport, base_url=str(client.base_url)
    ) as other:
        shown = await other.get(location)
        assert shown.status_code == 303
        assert shown.headers["location"].startswith("/login?request=")


async def test_the_code_step_expires_with_the_mfa_token(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    rp = await add_client(app)
    location, page = await _code_page(client, rp)
    clock.advance(301)
    late = await client.post(
        location, data={"csrf_token": csrf_token(page), "code": code_at(secret, clock())}
    )
    assert late.status_code == 303
    assert late.headers["location"].startswith("/login?request=")


async def test_wrong_codes_are_throttled(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    rp = await add_client(app)
    location, page = await _code_page(client, rp)
    token = csrf_token(page)
    statuses = []
    for _ in range(12):
        response = await client.post(location, data={"csrf_token": token, "code": "not-a-code"})
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert "retry-after" in response.headers
    right = await client.post(
        location, data={"csrf_token": token, "code": code_at(secret, clock())}
    )
    assert right.status_code == 429  # a right code does not get past the throttle

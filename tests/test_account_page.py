"""GET /account and its forms, through the login page like a browser (no JavaScript)."""

from __future__ import annotations

import asyncio
import re

import httpx
from fastapi import FastAPI

from tests.conftest import PASSWORD, TEST_ISSUER, FakeClock, password_grant, register
from tests.mfa_helpers import bearer, code_at
from tests.oidc_helpers import csrf_token

_SECRET = re.compile(r'id="totp-secret">([A-Z2-7]+)<')


async def _sign_in(client: httpx.AsyncClient, code: str | None = None) -> str:
    """From GET /account through the login page back to it; the account page."""
    start = await client.get("/account")
    assert start.status_code == 303
    login = start.headers["location"]
    assert login.startswith("/login?request=")
    assert "account" not in login  # the return is stored server side
    page = await client.get(login)
    form = {"csrf_token": csrf_token(page.text), "username": "alice", "password": PASSWORD}
    step = await client.post(login, data=form)
    assert step.status_code == 303, step.text
    if code is not None:
        location = step.headers["location"]
        shown = await client.get(location)
        step = await client.post(
            location, data={"csrf_token": csrf_token(shown.text), "code": code}
        )
        assert step.status_code == 303, step.text
    resumed = await client.get(step.headers["location"])
    assert resumed.headers["location"] == f"{TEST_ISSUER}/account"
    page = await client.get("/account")
    assert page.status_code == 200, page.text
    return page.text


def _token(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match is not None
    return match.group(1)


async def test_the_page_needs_a_browser_session_and_follows_the_page_rules(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    page = await _sign_in(client)
    assert 'id="username">alice<' in page
    shown = await client.get("/account")
    assert shown.headers["cache-control"] == "no-store"
    assert shown.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in shown.headers["content-security-policy"]
    assert "<script" not in page
    refused = await client.post("/account/sessions/end-others", data={})
    assert refused.status_code == 403  # no CSRF token


async def test_enrol_totp_from_the_page_then_log_in_with_the_code(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await register(client)
    page = await _sign_in(client)
    started = await client.post("/account/totp", data={"csrf_token": _token(page)})
    assert started.status_code == 200, started.text  # a login of just now: no password
    assert 'src="data:image/svg+xml;base64,' in started.text
    match = _SECRET.search(started.text)
    assert match is not None
    secret = match.group(1)
    confirmed = await client.post(
        "/account/totp/confirm",
        data={"csrf_token": _token(started.text), "code": code_at(secret, clock())},
    )
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.text.count("<li><code>") == 10
    clock.advance(30)
    client.cookies.clear()
    again = await _sign_in(client, code=code_at(secret, clock()))
    assert "On (authenticator app)." in again


async def test_enrolment_after_five_minutes_needs_the_password(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await register(client)
    await _sign_in(client)
    clock.advance(301)
    page = (await client.get("/account")).text
    assert 'name="password"' in page.split("/account/totp")[1].split("</form>")[0]
    refused = await client.post("/account/totp", data={"csrf_token": _token(page)})
    assert refused.status_code == 403
    ok = await client.post("/account/totp", data={"csrf_token": _token(page), "password": PASSWORD})
    assert ok.status_code == 200


async def test_end_one_session_and_all_others_and_change_the_password(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    first = (await password_grant(client)).json()["access_token"]
    second = (await password_grant(client)).json()["access_token"]
    page = await _sign_in(client)
    ids = re.findall(r'data-session="([^"]+)"', page)
    assert len(ids) == 2
    ended = await client.post(
        "/account/sessions/end", data={"csrf_token": _token(page), "session_id": ids[0]}
    )
    assert ended.status_code == 303
    still = [
        (await client.get("/users/me", headers=bearer(t))).status_code for t in (first, second)
    ]
    assert sorted(still) == [200, 401]
    await client.post("/account/sessions/end-others", data={"csrf_token": _token(page)})
    for token in (first, second):
        assert (await client.get("/users/me", headers=bearer(token))).status_code == 401
    weak = await client.post(
        "/account/password",
        data={"csrf_token": _token(page), "current_password": PASSWORD, "new_password": "short"},
    )
    assert weak.status_code == 400
    new = PASSWORD + "-and-more"
    changed = await client.post(
        "/account/password",
        data={"csrf_token": _token(page), "current_password": PASSWORD, "new_password": new},
    )
    assert changed.status_code == 200
    assert "Password changed." in changed.text
    assert (await password_grant(client, password=new)).status_code == 200


async def test_delete_the_account_from_the_page(app: FastAPI, client: httpx.AsyncClient) -> None:
    await register(client)
    page = await _sign_in(client)
    wrong = await client.post("/account/delete", data={"csrf_token": _token(page), "password": "x"})
    assert wrong.status_code == 403
    done = await client.post(
        "/account/delete", data={"csrf_token": _token(page), "password": PASSWORD}
    )
    assert done.status_code == 200
    assert (await password_grant(client)).status_code == 400
    assert (await client.get("/account")).status_code == 303


async def _mails(app: FastAPI, count: int) -> list[bytes]:
    """Wait for the outbox worker to file `count` mails in the data dir (the test default)."""
    directory = app.state.settings.data_dir / "mail"
    files: list[bytes] = []
    for _ in range(200):
        if directory.exists():
            files = [p.read_bytes() for p in sorted(directory.glob("*.eml"))]
        if len(files) >= count:
            break
        await asyncio.sleep(0.05)
    return files


async def test_resend_verification_sends_a_new_link(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    body = {"username": "alice", "password": PASSWORD, "email": "alice@example.com"}
    assert (await client.post("/register", json=body)).status_code == 201
    page = await _sign_in(client)
    assert "not verified" in page
    assert len(await _mails(app, 1)) == 1
    sent = await client.post(
        "/account/email/resend", data={"csrf_token": _token(page), "password": PASSWORD}
    )
    assert sent.status_code == 200, sent.text
    assert "Verification mail sent." in sent.text
    mails = await _mails(app, 2)
    assert len(mails) == 2
    assert all(b"/email/verify?token=" in mail for mail in mails)


async def test_the_account_pages_client_id_gets_no_code(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/authorize",
        params={
            "response_type": "code",
            "client_id": "auth-service:account",
            "redirect_uri": f"{TEST_ISSUER}/account",
            "scope": "openid",
        },
    )
    assert response.status_code == 400  # an HTML error page: no such client
    assert "location" not in response.headers

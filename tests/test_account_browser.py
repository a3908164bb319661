"""The account page in a real headless Chromium against a real `auth-service serve`:
register, sign in, enrol TOTP with a code computed from the secret the page shows, see
the recovery codes, sign out, sign in with password + code, end another session."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pyotp
import pytest
from playwright.sync_api import Browser, ConsoleMessage

from tests.conftest import PASSWORD, _seed_id_token_key
from tests.processes import free_port, running_service, service_env
from tests.test_swagger_browser import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = pytest.mark.slow

USERNAME = "account-user"
TIMEOUT_MS = 20_000
MFA_RECOVERY = "urn:auth-service:grant-type:mfa-recovery-code"


def _other_session(issuer: str, recovery_code: str) -> str:
    """A second login elsewhere (the password grant, then a recovery code); its token."""
    first = httpx.post(
        f"{issuer}/token",
        data={"grant_type": "password", "username": USERNAME, "password": PASSWORD},
    )
    assert first.status_code == 400, first.text
    assert first.json()["error"] == "mfa_required"
    second = httpx.post(
        f"{issuer}/token",
        data={
            "grant_type": MFA_RECOVERY,
            "mfa_token": first.json()["mfa_token"],
            "recovery_code": recovery_code,
        },
    )
    assert second.status_code == 200, second.text
    token: str = second.json()["access_token"]
    return token


def test_enrol_totp_on_the_account_page_then_sign_in_with_it(
    browser: Browser,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    env = service_env(
        tmp_path,
        AUTH_PORT=str(port),
        AUTH_ISSUER=issuer,
        AUTH_HASH_POOL_SIZE="2",
        AUTH_LOG_LEVEL="WARNING",
    )
    _seed_id_token_key(tmp_path)
    with running_service("account-browser", env, tmp_path, start_timeout=90):
        body = {"username": USERNAME, "password": PASSWORD}
        assert httpx.post(f"{issuer}/register", json=body).status_code == 201
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        problems: list[str] = []

        def console(message: ConsoleMessage) -> None:
            if "Content Security Policy" in message.text or "Refused" in message.text:
                problems.append(message.text)

        page.on("console", console)

        def sign_in(code: str | None) -> None:
            page.goto(f"{issuer}/account")
            assert urlsplit(page.url).path == "/login"
            page.fill("input[name=username]", USERNAME)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            if code is not None:
                page.wait_for_url(f"{issuer}/login/code?*")
                page.fill("input[name=code]", code)
                page.click("button[type=submit]")
            page.wait_for_url(f"{issuer}/account")
            assert page.locator("#username").inner_text() == USERNAME

        sign_in(None)
        page.click("text=Set up an authenticator app")
        secret = page.locator("#totp-secret").inner_text()
        qr = page.locator("#totp-qr")
        assert qr.evaluate("img => img.complete && img.naturalWidth > 0")  # CSP let it show
        totp = pyotp.TOTP(secret)
        page.fill("#totp-code", totp.now())
        page.click("text=Confirm")
        codes = page.locator("#recovery-codes li").all_inner_texts()
        assert len(codes) == 10
        page.reload()
        assert page.locator("#recovery-codes").count() == 0  # shown once
        assert "On (authenticator app)." in page.content()

        page.click("#sign-out")
        page.click("button:has-text('Sign out')")
        page.wait_for_selector("h1:has-text('Signed out')")
        page.goto(f"{issuer}/account")
        assert urlsplit(page.url).path == "/login"

        # The next time step's code (the one just used is spent; ±1 step is accepted).
        sign_in(totp.at(time.time() + 30))
        other = _other_session(issuer, codes[0])
        me = httpx.get(f"{issuer}/users/me", headers={"Authorization": f"Bearer {other}"})
        assert me.status_code == 200
        page.reload()
        rows = page.locator("#sessions tr[data-session]")
        assert rows.count() == 1
        rows.first.locator("text=End").click()
        page.wait_for_url(f"{issuer}/account")
        assert page.locator("#sessions tr[data-session]").count() == 0
        me = httpx.get(f"{issuer}/users/me", headers={"Authorization": f"Bearer {other}"})
        assert me.status_code == 401
        assert problems == [], problems
        context.close()

"""The login page in a real headless Chromium, driven like a person through a relying party.

The service is a real `auth-service serve` on 127.0.0.1; the relying party is a tiny HTTP
server reached either as `127.0.0.1` (same site) or as `localhost` (another site, so the
browser applies SameSite for real: the SSO cookie must still ride the RP's top-level
redirect, which SameSite=Lax allows and Strict would not). The second visit must need no
password. The code is exchanged on the back channel and the ID token verified with PyJWT.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt as pyjwt
import pytest
from playwright.sync_api import Browser, ConsoleMessage

from tests.conftest import PASSWORD, _seed_id_token_key
from tests.processes import migrate_schema, run_cli, running_service, service_env
from tests.test_swagger_browser import browser  # noqa: F401 - the shared Chromium fixture

pytestmark = pytest.mark.slow

USERNAME = "browser-user"
TIMEOUT_MS = 20_000


class RelyingParty:
    """/start redirects to the OP with state, nonce and PKCE; /cb records what came back."""

    def __init__(self, host: str) -> None:
        self.issuer = ""  # the OP's URL, known once it listens
        self.callbacks: list[dict[str, str]] = []
        self.pending: dict[str, tuple[str, str]] = {}  # state -> (nonce, verifier)
        rp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/start":
                    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
                    verifier = secrets.token_urlsafe(48)
                    challenge = (
                        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
                        .rstrip(b"=")
                        .decode()
                    )
                    rp.pending[state] = (nonce, verifier)
                    query = urlencode(
                        {
                            "response_type": "code",
                            "client_id": "browser-rp",
                            "redirect_uri": rp.callback,
                            "scope": "openid profile",
                            "state": state,
                            "nonce": nonce,
                            "code_challenge": challenge,
                            "code_challenge_method": "S256",
                        }
                    )
                    self.send_response(302)
                    self.send_header("Location", f"{rp.issuer}/authorize?{query}")
                    self.end_headers()
                    return
                if parts.path != "/cb":
                    self.send_response(404)
                    self.end_headers()
                    return
                values = {k: v[0] for k, v in parse_qs(parts.query).items()}
                rp.callbacks.append(values)
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.end_headers()
                self.wfile.write(b"<!doctype html><title>RP</title><p id=done>signed in</p>")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # the kernel picks
        self.port = self.server.server_address[1]
        self.base = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def callback(self) -> str:
        return f"{self.base}/cb"


@pytest.fixture(params=["127.0.0.1", "localhost"], ids=["same-site", "cross-site"])
def flow(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RelyingParty, str]]:
    """A served OP and an RP on the parametrised host; the client's secret."""
    # The issuer is http://127.0.0.1 and the port the kernel picks (known once it listens).
    env = service_env(tmp_path, AUTH_HASH_POOL_SIZE="2", AUTH_LOG_LEVEL="WARNING")
    rp = RelyingParty(request.param)
    try:
        _seed_id_token_key(tmp_path)  # no 3072-bit RSA generation at start
        migrate_schema(env)
        added = run_cli(
            env,
            tmp_path,
            "clients",
            "add",
            "browser-rp",
            "--confidential",
            "--first-party",
            "--grants",
            "authorization_code",
            "refresh_token",
            "--scopes",
            "openid",
            "profile",
            "--redirect-uris",
            rp.callback,
        )
        secret = json.loads(added.splitlines()[-1])["client_secret"]
        with running_service("oidc-browser", env, tmp_path, start_timeout=90) as service:
            rp.issuer = service.url
            body = {"username": USERNAME, "password": PASSWORD}
            assert httpx.post(f"{rp.issuer}/register", json=body).status_code == 201
            rp.thread.start()
            try:
                yield rp, secret
            finally:
                rp.server.shutdown()
    finally:
        rp.server.server_close()  # its listening socket, bound in RelyingParty()


def _exchange(rp: RelyingParty, secret: str, callback: dict[str, str]) -> dict[str, object]:
    nonce, verifier = rp.pending[callback["state"]]
    token = httpx.post(
        f"{rp.issuer}/token",
        data={
            "grant_type": "authorization_code",
            "code": callback["code"],
            "redirect_uri": rp.callback,
            "code_verifier": verifier,
        },
        auth=("browser-rp", secret),
    )
    assert token.status_code == 200, token.text
    id_token = token.json()["id_token"]
    jwks = httpx.get(f"{rp.issuer}/.well-known/jwks.json").json()
    key = pyjwt.PyJWKSet.from_dict(jwks)[pyjwt.get_unverified_header(id_token)["kid"]]
    claims: dict[str, object] = pyjwt.decode(
        id_token, key.key, algorithms=["RS256"], audience="browser-rp", issuer=rp.issuer
    )
    assert claims["nonce"] == nonce
    return claims


def test_login_through_the_real_page_then_single_sign_on(
    browser: Browser,  # noqa: F811 - the fixture imported above
    flow: tuple[RelyingParty, str],
) -> None:
    rp, secret = flow
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        # 404s (favicons) and the failed login's 401 are expected; a refused load is not.
        if "Content Security Policy" in message.text or "Refused" in message.text:
            problems.append(message.text)

    page.on("console", console)
    page.goto(f"{rp.base}/start")
    assert urlsplit(page.url).path == "/login"
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", "not the password at all")
    page.click("button[type=submit]")
    assert page.locator("[role=alert]").inner_text() == "invalid username or password"
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{rp.callback}?*")
    assert page.locator("#done").inner_text() == "signed in"
    first = _exchange(rp, secret, rp.callbacks[-1])
    cookies = {c["name"]: c for c in context.cookies(rp.issuer)}
    session = cookies["auth_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Lax"

    page.goto(f"{rp.base}/start")  # the second visit: no password
    page.wait_for_url(f"{rp.callback}?*")
    assert len(rp.callbacks) == 2
    second = _exchange(rp, secret, rp.callbacks[-1])
    assert second["auth_time"] == first["auth_time"]
    assert second["sid"] == first["sid"]
    assert problems == [], problems  # nothing the pages use was refused by their CSP
    context.close()

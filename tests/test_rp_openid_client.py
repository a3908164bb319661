"""npm's openid-client as a public relying party, cross-site, driven by Chromium end to end.

The relying party is tests/rp/openid_client_rp.mjs: a small Node HTTP server whose OpenID
work is all openid-client's (discovery, authorization URL with PKCE S256, state and nonce,
`authorizationCodeGrant` checking the response's state and RFC 9207 `iss` and the ID token,
userinfo, refresh, end-session URL). It runs on `localhost`, the provider on `127.0.0.1`:
two sites, so the provider's cookies are what SameSite=Lax really lets through on the
top-level navigations between them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser

from tests.processes import free_port
from tests.rp_support import (
    REPO,
    Provider,
    browser_context,
    chromium,
    finish_at,
    log_in,
    needs,
    running_provider,
)

pytestmark = pytest.mark.slow

USERNAME = "node-user"
NODE_PREFIX = REPO / ".cache" / "rp-node"
RP_SCRIPT = Path(__file__).parent / "rp" / "openid_client_rp.mjs"
START_TIMEOUT_SECONDS = 20.0


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    with running_provider(tmp_path_factory.mktemp("rp-node")) as running:
        yield running


@pytest.fixture(scope="module")
def user_id(provider: Provider) -> str:
    return provider.add_user(USERNAME)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


class NodeRelyingParty:
    """The openid-client relying party process on http://localhost:PORT."""

    def __init__(
        self, provider: Provider, base: str, client_id: str, log: Path, **env: str
    ) -> None:
        self.base = base
        self.client_id = client_id
        self.log = log
        node = shutil.which("node")
        assert node is not None
        port = str(urlsplit(base).port)
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                [node, str(RP_SCRIPT), provider.issuer, client_id, base, port],
                env={**os.environ, "RP_NODE_PREFIX": str(NODE_PREFIX), **env},
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def wait_until_ready(self) -> None:
        """Until it printed "ready" (discovery done, listening), or the test fails."""
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while "ready" not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the openid-client RP did not start:\n{self.output()}")
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@contextmanager
def running_node_rp(
    provider: Provider, directory: Path, host: str, *options: str, **env: str
) -> Iterator[NodeRelyingParty]:
    """Register a client for an openid-client RP on http://HOST:PORT, run it, stop it."""
    needs(shutil.which("node") is not None, "Node.js")
    needs((NODE_PREFIX / "node_modules" / "openid-client").is_dir(), "openid-client (npm)")
    base = f"http://{host}:{free_port()}"
    registered = provider.add_client(
        f"openid-client-{host.replace('.', '-')}",
        "--grants",
        "authorization_code",
        "refresh_token",
        "--redirect-uris",
        f"{base}/callback",
        "--post-logout-redirect-uris",
        f"{base}/logged-out",
        "--scopes",
        "openid",
        "profile",
        *options,
    )
    if "client_secret" in registered:
        env = {**env, "RP_CLIENT_SECRET": registered["client_secret"]}
    rp = NodeRelyingParty(provider, base, registered["client_id"], directory / "rp.log", **env)
    try:
        rp.wait_until_ready()
        yield rp
    finally:
        rp.stop()


@pytest.fixture(scope="module")
def node_rp(
    provider: Provider, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeRelyingParty]:
    """A public client (PKCE, no secret), third-party, its RP on localhost: cross-site."""
    directory = tmp_path_factory.mktemp("rp-node-public")
    with running_node_rp(provider, directory, "localhost") as rp:
        yield rp


def _result(text: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(text)
    return result


def test_openid_client_logs_in_across_sites_with_sso_and_logout(
    node_rp: NodeRelyingParty, provider: Provider, user_id: str, browser: Browser
) -> None:
    with browser_context(browser) as context:
        page = context.new_page()
        page.goto(f"{node_rp.base}/login")
        trace = log_in(page, USERNAME)
        result = _result(finish_at(page))
        assert trace.login_page
        assert trace.consent_page, "a client without --first-party must ask for consent"
        assert page.url.startswith(f"{node_rp.base}/callback?")

        # openid-client validated all of this; the test checks what it validated.
        claims = result["claims"]
        assert result["openid_client"].split(".")[0] == "6"
        assert result["token_type"].lower() == "bearer"
        assert claims["iss"] == provider.issuer
        assert claims["aud"] in (node_rp.client_id, [node_rp.client_id])
        assert claims["sub"] == user_id
        assert claims["amr"] == ["pwd"]
        assert isinstance(claims["auth_time"], int)
        assert claims["sid"]
        assert claims["at_hash"]
        assert result["userinfo"]["sub"] == user_id
        assert result["userinfo"]["preferred_username"] == USERNAME
        refreshed = result["refreshed"]
        assert refreshed is not None, "no refresh token for a client granted refresh_token"
        assert refreshed["rotated"]
        assert refreshed["userinfo_sub"] == user_id
        if refreshed["claims"] is not None:
            for claim in ("iss", "sub", "aud", "auth_time"):
                assert refreshed["claims"][claim] == claims[claim], claim

        # The browser holds the provider's session cookie: HttpOnly, SameSite=Lax, no Secure
        # on a plain-HTTP issuer (Secure and __Host- come with https).
        session_cookies = [
            cookie
            for cookie in context.cookies(provider.issuer)
            if cookie.get("httpOnly") and cookie.get("sameSite") == "Lax"
        ]
        assert session_cookies, context.cookies(provider.issuer)

        # The provider's SSO cookie rides the cross-site top-level navigation (SameSite=Lax):
        # the second login needs neither the password nor consent again.
        page.goto(f"{node_rp.base}/login")
        trace = log_in(page, USERNAME)
        second = _result(finish_at(page))
        assert not trace.login_page, "SSO across sites failed: the login page came back"
        assert not trace.consent_page, "the consent given should be remembered"
        assert second["claims"]["sub"] == user_id
        assert second["claims"]["auth_time"] == claims["auth_time"]
        assert second["claims"]["sid"] == claims["sid"]

        # RP-initiated logout: straight back to the registered URI with openid-client's state.
        page.goto(f"{node_rp.base}/logout")
        assert _result(finish_at(page))["logged_out"] is True
        assert page.url.startswith(f"{node_rp.base}/logged-out?")

        # After it, a silent login is refused and openid-client reports login_required.
        page.goto(f"{node_rp.base}/login?prompt=none")
        page.locator("#rp-error").wait_for()
        refusal = _result(page.locator("#rp-error").inner_text())
        assert refusal.get("error") == "login_required", refusal


def test_prompt_login_shows_the_login_page_again(
    node_rp: NodeRelyingParty, user_id: str, browser: Browser
) -> None:
    """prompt=login re-authenticates even with a live SSO session (Core §3.1.2.1)."""
    with browser_context(browser) as context:
        page = context.new_page()
        page.goto(f"{node_rp.base}/login")
        log_in(page, USERNAME)
        first = _result(finish_at(page))
        page.goto(f"{node_rp.base}/login?prompt=login")
        trace = log_in(page, USERNAME)
        again = _result(finish_at(page))
        assert trace.login_page, "prompt=login must ask for the password again"
        assert again["claims"]["sub"] == user_id
        assert again["claims"]["auth_time"] >= first["claims"]["auth_time"]


def test_discovery_document_is_served_to_node(provider: Provider) -> None:
    """The document openid-client fetched: issuer byte-identical (Discovery §4.3)."""
    document = httpx.get(provider.discovery_url, timeout=5).json()
    assert document["issuer"] == provider.issuer
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["request_uri_parameter_supported"] is False


def test_openid_client_confidential_es256_same_site(
    provider: Provider, user_id: str, browser: Browser, tmp_path: Path
) -> None:
    """client_secret_basic, --id-token-alg ES256, --first-party, RP on 127.0.0.1.

    openid-client is told to expect ES256 ID tokens and refuses any other alg.
    """
    with (
        running_node_rp(
            provider,
            tmp_path,
            "127.0.0.1",
            "--confidential",
            "--first-party",
            "--id-token-alg",
            "ES256",
            RP_ID_TOKEN_ALG="ES256",
        ) as rp,
        browser_context(browser) as context,
    ):
        page = context.new_page()
        page.goto(f"{rp.base}/login")
        trace = log_in(page, USERNAME)
        result = _result(finish_at(page))
        assert trace.login_page
        assert not trace.consent_page, "a --first-party client skips consent"
        assert result["id_token_header"]["alg"] == "ES256"
        assert result["claims"]["sub"] == user_id
        assert result["claims"]["aud"] in (rp.client_id, [rp.client_id])
        assert result["userinfo"]["preferred_username"] == USERNAME
        assert result["refreshed"]["rotated"]

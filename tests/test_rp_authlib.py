"""Authlib's OpenID Connect client as a confidential relying party of a real provider.

Authlib (not this project) does discovery, builds the authorization URL with state, nonce and
PKCE S256, exchanges the code with client_secret_post, validates the ID token (signature from
the JWKS, iss, aud, exp, nonce, at_hash: `OpenIDMixin.parse_id_token` with `CodeIDToken`),
calls userinfo, refreshes, and builds the RP-initiated logout URL. A person logs in through
the provider's own login and consent pages in Debian's headless Chromium; the authorization
response lands on a loopback callback server the test runs (on 127.0.0.1: same site as the
provider; tests/test_rp_openid_client.py runs the cross-site arrangement).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authlib.integrations.base_client import BaseApp, OAuth2Mixin, OAuthError, OpenIDMixin
from authlib.integrations.httpx_client import OAuth2Client
from playwright.sync_api import Browser

from tests.rp_support import (
    BACKENDS,
    CallbackServer,
    Provider,
    browser_context,
    chromium,
    finish_at,
    log_in,
    running_provider,
)

pytestmark = pytest.mark.slow

USERNAME = "authlib-user"
SCOPE = "openid profile"


class _NoFramework:
    """Authlib's web-framework hooks; this relying party keeps its tokens in the test."""

    def update_token(self, token: object, refresh_token: object, access_token: object) -> None:
        return None


class AuthlibRelyingParty(OAuth2Mixin, OpenIDMixin, BaseApp):  # type: ignore[misc]
    """Authlib's framework-neutral OAuth 2 + OpenID app, on its httpx client."""

    client_cls = OAuth2Client


@pytest.fixture(scope="module", params=BACKENDS)
def provider(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Provider]:
    """The provider on each backend pair (PostgreSQL + Redis with two workers)."""
    directory = tmp_path_factory.mktemp("rp-authlib")
    with running_provider(directory, backend=request.param) as running:
        yield running


@pytest.fixture(scope="module")
def user_id(provider: Provider) -> str:
    return provider.add_user(USERNAME)


@pytest.fixture(scope="module")
def callback() -> Iterator[CallbackServer]:
    with CallbackServer(host="127.0.0.1").running() as server:
        yield server


@pytest.fixture(scope="module")
def registered(provider: Provider, callback: CallbackServer) -> dict[str, str]:
    """A confidential, third-party client: `clients add --confidential ...` (no --first-party)."""
    return provider.add_client(
        "authlib-rp",
        "--confidential",
        "--grants",
        "authorization_code",
        "refresh_token",
        "--redirect-uris",
        callback.url("/callback"),
        "--post-logout-redirect-uris",
        callback.url("/logged-out"),
        "--scopes",
        "openid",
        "profile",
    )


@pytest.fixture
def rp(provider: Provider, registered: dict[str, str]) -> AuthlibRelyingParty:
    return AuthlibRelyingParty(
        _NoFramework(),
        name="authlib",
        client_id=registered["client_id"],
        client_secret=registered["client_secret"],
        server_metadata_url=provider.discovery_url,
        client_kwargs={
            "scope": SCOPE,
            "code_challenge_method": "S256",
            "token_endpoint_auth_method": "client_secret_post",
        },
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def _header(jwt: str) -> dict[str, Any]:
    segment = jwt.split(".")[0]
    header: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    )
    return header


def _authorize(rp: AuthlibRelyingParty, callback: CallbackServer, **params: str) -> dict[str, str]:
    request: dict[str, str] = rp.create_authorization_url(
        redirect_uri=callback.url("/callback"), **params
    )
    return request


def _code_from(callback: CallbackServer, request: dict[str, str], issuer: str) -> str:
    """The authorization response: state echoed, iss per RFC 9207, a code and no error."""
    arrival = callback.last("/callback")
    assert arrival.query.get("state") == request["state"], arrival
    assert arrival.query.get("iss") == issuer, arrival
    assert "error" not in arrival.query, arrival
    return arrival.query["code"]


def _exchange(
    rp: AuthlibRelyingParty, callback: CallbackServer, request: dict[str, str], code: str
) -> dict[str, Any]:
    token: dict[str, Any] = rp.fetch_access_token(
        redirect_uri=callback.url("/callback"),
        code=code,
        code_verifier=request["code_verifier"],
    )
    return token


def test_discovery_is_what_authlib_needs(rp: AuthlibRelyingParty, provider: Provider) -> None:
    metadata = rp.load_server_metadata()
    assert metadata["issuer"] == provider.issuer
    for endpoint in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint"):
        assert metadata[endpoint].startswith(f"{provider.issuer}/"), metadata
    assert "client_secret_post" in metadata["token_endpoint_auth_methods_supported"]
    assert "S256" in metadata["code_challenge_methods_supported"]
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    assert metadata["end_session_endpoint"].startswith(f"{provider.issuer}/")
    assert rp.fetch_jwk_set()["keys"], "no keys in the JWKS"


def test_code_flow_id_token_userinfo_refresh_and_sso(
    rp: AuthlibRelyingParty,
    provider: Provider,
    callback: CallbackServer,
    registered: dict[str, str],
    browser: Browser,
) -> None:
    client_id = registered["client_id"]
    username = "authlib-sso-user"  # its own user: its first consent is given here
    user_id = provider.add_user(username)
    with browser_context(browser) as context:
        page = context.new_page()
        request = _authorize(rp, callback)
        assert {"state", "nonce", "code_verifier"} <= request.keys()
        page.goto(request["url"])
        trace = log_in(page, username)
        finish_at(page)
        assert trace.login_page
        assert trace.consent_page, "a client without --first-party must ask for consent"
        assert "profile" in trace.consent_scopes, "the consent page lists the scopes"
        token = _exchange(rp, callback, request, _code_from(callback, request, provider.issuer))

        assert token["token_type"].lower() == "bearer"
        assert token.get("refresh_token"), token
        assert _header(token["id_token"]).get("typ", "JWT") == "JWT"
        assert _header(token["id_token"])["alg"] == "RS256"  # the registration's default
        # Authlib's own validation: signature (JWKS), iss, aud, exp, iat, nonce, at_hash.
        claims = rp.parse_id_token(token, nonce=request["nonce"])
        assert "at_hash" in claims  # so Authlib checked it against the access token
        assert claims["iss"] == provider.issuer
        assert claims["aud"] in (client_id, [client_id])
        assert claims["sub"] == user_id
        assert claims["nonce"] == request["nonce"]
        assert claims["amr"] == ["pwd"]
        assert isinstance(claims["auth_time"], int)
        assert claims["sid"]

        info = rp.userinfo(token=token)
        assert info["sub"] == user_id
        assert info["preferred_username"] == username

        # Refresh with client_secret_post: a rotated refresh token, and an ID token (if any)
        # with the same iss, sub, aud and auth_time (Core §12.2).
        refreshed: dict[str, Any] = rp.fetch_access_token(
            grant_type="refresh_token", refresh_token=token["refresh_token"]
        )
        assert refreshed["access_token"] != token["access_token"]
        assert refreshed.get("refresh_token") not in (None, token["refresh_token"])
        if "id_token" in refreshed:
            again = rp.parse_id_token(refreshed, nonce=None)
            for claim in ("iss", "sub", "aud", "auth_time"):
                assert again[claim] == claims[claim], claim
        assert rp.userinfo(token=refreshed)["sub"] == user_id

        # A second authorization in the same browser: SSO, no password, consent remembered.
        second = _authorize(rp, callback)
        page.goto(second["url"])
        trace = log_in(page, username)
        finish_at(page)
        assert not trace.login_page, "the SSO session should skip the login page"
        assert not trace.consent_page, "the consent given should be remembered"
        token2 = _exchange(rp, callback, second, _code_from(callback, second, provider.issuer))
        claims2 = rp.parse_id_token(token2, nonce=second["nonce"])
        assert claims2["sub"] == user_id
        assert claims2["auth_time"] == claims["auth_time"]  # no new authentication
        assert claims2["sid"] == claims["sid"]  # the same browser session


def test_rp_initiated_logout_then_prompt_none_needs_login(
    rp: AuthlibRelyingParty,
    provider: Provider,
    callback: CallbackServer,
    user_id: str,
    browser: Browser,
) -> None:
    with browser_context(browser) as context:
        page = context.new_page()
        request = _authorize(rp, callback)
        page.goto(request["url"])
        log_in(page, USERNAME)
        finish_at(page)
        token = _exchange(rp, callback, request, _code_from(callback, request, provider.issuer))
        assert rp.parse_id_token(token, nonce=request["nonce"])["sub"] == user_id

        logout: dict[str, str] = rp.create_logout_url(
            post_logout_redirect_uri=callback.url("/logged-out"),
            id_token_hint=token["id_token"],
        )
        page.goto(logout["url"])
        finish_at(page)  # redirected straight back: the hint verified, the URI is registered
        assert callback.last("/logged-out").query == {"state": logout["state"]}

        # The browser session is over: prompt=none comes back with login_required.
        silent = _authorize(rp, callback, prompt="none")
        page.goto(silent["url"])
        finish_at(page)
        arrival = callback.last("/callback")
        assert arrival.query.get("error") == "login_required", arrival
        assert arrival.query.get("state") == silent["state"]
        assert arrival.query.get("iss") == provider.issuer

        # ... and so are the sessions opened through it: refresh and userinfo refuse.
        with pytest.raises(OAuthError) as refused:
            rp.fetch_access_token(grant_type="refresh_token", refresh_token=token["refresh_token"])
        assert refused.value.error == "invalid_grant"
        with pytest.raises(httpx.HTTPStatusError) as denied:
            rp.userinfo(token=token)
        assert denied.value.response.status_code == 401
        assert "invalid_token" in denied.value.response.headers.get("www-authenticate", "")


def test_authlib_refuses_a_code_with_the_wrong_verifier(
    rp: AuthlibRelyingParty,
    provider: Provider,
    callback: CallbackServer,
    browser: Browser,
) -> None:
    """PKCE binds the code to this browser's verifier (RFC 7636 §4.6): invalid_grant."""
    with browser_context(browser) as context:
        page = context.new_page()
        request = _authorize(rp, callback)
        page.goto(request["url"])
        log_in(page, USERNAME)
        finish_at(page)
        code = _code_from(callback, request, provider.issuer)
        wrong = dict(request, code_verifier=request["code_verifier"][::-1])
        with pytest.raises(OAuthError) as refused:
            _exchange(rp, callback, wrong, code)
        assert refused.value.error == "invalid_grant"


def test_prompt_consent_asks_again_and_deny_is_access_denied(
    rp: AuthlibRelyingParty,
    provider: Provider,
    callback: CallbackServer,
    user_id: str,
    browser: Browser,
) -> None:
    """prompt=consent always asks (Core §3.1.2.1); deny goes back as access_denied."""
    with browser_context(browser) as context:
        page = context.new_page()
        first = _authorize(rp, callback)
        page.goto(first["url"])
        log_in(page, USERNAME)
        finish_at(page)
        _code_from(callback, first, provider.issuer)

        asked = _authorize(rp, callback, prompt="consent")
        page.goto(asked["url"])
        trace = log_in(page, USERNAME, decision="deny")
        finish_at(page)
        assert not trace.login_page
        assert trace.consent_page, "prompt=consent must show the consent page"
        arrival = callback.last("/callback")
        assert arrival.query.get("error") == "access_denied", arrival
        assert arrival.query.get("state") == asked["state"]
        assert arrival.query.get("iss") == provider.issuer
        assert "code" not in arrival.query

"""A relying party and a browser for the OpenID Connect tests, over the ASGI transport.

The "browser" is an httpx client that keeps cookies and follows our pages by hand (it
reads the CSRF token out of each form, like a person submitting it); the relying party's
back channel uses the same client. ID tokens are checked with PyJWT against the JWKS the
service publishes, never with the service's own code.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt as pyjwt
from fastapi import FastAPI

from auth_service.services.clients import register_client
from auth_service.services.context import ServiceContext
from tests.conftest import PASSWORD, TEST_ISSUER

RP_CALLBACK = "https://rp.example/cb"
RP_LOGGED_OUT = "https://rp.example/logged-out"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def pkce_pair() -> tuple[str, str]:
    """A fresh (verifier, S256 challenge)."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def csrf_token(page: str) -> str:
    """The CSRF token of the (only) form on a page."""
    match = _CSRF.search(page)
    assert match is not None, page
    return match.group(1)


def query(location: str) -> dict[str, str]:
    """The query parameters of a redirect, one value each."""
    values = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in values.values()), location
    return {k: v[0] for k, v in values.items()}


@dataclass
class RelyingParty:
    """A registered client and what it needs to run the flow."""

    client_id: str
    secret: str | None
    redirect_uri: str = RP_CALLBACK
    seen: list[str] = field(default_factory=list)

    def auth(self) -> dict[str, str]:
        """client_secret_post credentials (or just the id for a public client)."""
        if self.secret is None:
            return {"client_id": self.client_id}
        return {"client_id": self.client_id, "client_secret": self.secret}


async def add_client(
    app: FastAPI,
    client_id: str = "rp",
    *,
    confidential: bool = True,
    first_party: bool = True,
    id_token_alg: str = "RS256",
    require_pkce: bool = False,
    scopes: frozenset[str] = frozenset({"openid", "profile", "email"}),
) -> RelyingParty:
    """Register an authorization-code client with the callback and post-logout URIs."""
    ctx: ServiceContext = app.state.services
    created = await register_client(
        ctx,
        client_id,
        confidential=confidential,
        grant_types=frozenset({"authorization_code", "refresh_token"}),
        scopes=scopes,
        redirect_uris=[RP_CALLBACK],
        post_logout_redirect_uris=[RP_LOGGED_OUT],
        first_party=first_party,
        require_pkce=require_pkce,
        id_token_alg=id_token_alg,
    )
    return RelyingParty(client_id, created.secret)


def authorize_params(rp: RelyingParty, **extra: str) -> dict[str, str]:
    """A Basic OP authorization request, with state and nonce."""
    params = {
        "response_type": "code",
        "client_id": rp.client_id,
        "redirect_uri": rp.redirect_uri,
        "scope": "openid profile",
        "state": secrets.token_urlsafe(8),
        "nonce": secrets.token_urlsafe(8),
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v != ""}


async def follow(
    http: httpx.AsyncClient,
    response: httpx.Response,
    *,
    username: str = "alice",
    password: str = PASSWORD,
    consent: str = "allow",
    code: str | None = None,
    pages: list[str] | None = None,
) -> str:
    """Act as the browser until the service redirects to the relying party; that URL.
    `pages` collects the pages shown ("login", "consent") on the way."""
    for _ in range(10):
        assert response.status_code in (302, 303), (response.status_code, response.text)
        location = response.headers["location"]
        if location.startswith("https://rp.example/"):
            return location
        path = urlsplit(location).path
        page = await http.get(location)
        if path == "/login":
            assert page.status_code == 200, page.text
            if pages is not None:
                pages.append("login")
            form = {"csrf_token": csrf_token(page.text), "username": username, "password": password}
            response = await http.post(location, data=form)
        elif path == "/login/code" and code is not None:
            assert page.status_code == 200, page.text
            if pages is not None:
                pages.append("code")
            response = await http.post(
                location, data={"csrf_token": csrf_token(page.text), "code": code}
            )
        elif path == "/consent":
            assert page.status_code == 200, page.text
            if pages is not None:
                pages.append("consent")
            form = {"csrf_token": csrf_token(page.text), "decision": consent}
            response = await http.post(location, data=form)
        else:
            response = page
    raise AssertionError("the flow did not end at the relying party")


async def authorize(
    http: httpx.AsyncClient, rp: RelyingParty, params: dict[str, str], **browser: Any
) -> dict[str, str]:
    """Run the front channel; the callback's query parameters."""
    response = await http.get("/authorize", params=params)
    return query(await follow(http, response, **browser))


async def exchange(
    http: httpx.AsyncClient, rp: RelyingParty, code: str, **extra: str
) -> httpx.Response:
    """POST /token grant_type=authorization_code (client_secret_post)."""
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": rp.redirect_uri,
        **rp.auth(),
        **extra,
    }
    return await http.post("/token", data=form)


async def verify_id_token(
    http: httpx.AsyncClient, token: str, rp: RelyingParty, *, algorithm: str = "RS256"
) -> dict[str, Any]:
    """Verify an ID token as an independent RP would: PyJWT, the published JWKS."""
    header = pyjwt.get_unverified_header(token)
    assert header["typ"] == "JWT"
    assert header["alg"] == algorithm
    jwks = (await http.get("/.well-known/jwks.json")).json()
    key = pyjwt.PyJWKSet.from_dict(jwks)[header["kid"]]
    claims: dict[str, Any] = pyjwt.decode(
        token,
        key.key,
        algorithms=[algorithm],
        audience=rp.client_id,
        issuer=TEST_ISSUER,
        leeway=600,  # the tests move the service clock forward a little
        options={"require": ["iss", "sub", "aud", "exp", "iat", "auth_time", "sid", "amr"]},
    )
    return claims


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6, computed independently."""
    digest = hashlib.sha256(access_token.encode()).digest()
    return base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()

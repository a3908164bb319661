"""auth_service.verify against an in-process issuer, and interop with third-party libraries."""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import authlib.deprecate
import httpx
import pytest
from fastapi import FastAPI
from jose import jwt
from joserfc import jwt as rfc_jwt
from joserfc.jwk import KeySet

from auth_service import verify
from auth_service.security.keys import generate_private_key_pem, load_signing_key
from auth_service.security.tokens import TokenService
from auth_service.verify import InsufficientScopeError, TokenError, TokenVerifier
from tests import jws_variants
from tests.conftest import PASSWORD, TEST_ISSUER, FakeClock, access_token

# Authlib 1.9 forces its "move to httpx2" notice on (simplefilter "always") at import; the
# httpx client it warns about is the one this test means to use.
warnings.filterwarnings("ignore", category=authlib.deprecate.AuthlibDeprecationWarning)
from authlib.integrations.httpx_client import AsyncOAuth2Client  # noqa: E402


def test_verify_imports_nothing_else_from_the_package() -> None:
    tree = ast.parse(Path(verify.__file__).read_text(encoding="utf-8"))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.startswith("auth_service")}


@pytest.fixture
def verifier(client: httpx.AsyncClient, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(TEST_ISSUER, "api", http=client, clock=lambda: clock().timestamp())


def _signed(app: FastAPI, clock: FakeClock, **overrides: Any) -> str:
    """A token signed with the issuer's own key, with claims overridden."""
    key = app.state.services.tokens._signing_key
    now = int(clock().timestamp())
    claims = {
        "iss": TEST_ISSUER,
        "aud": "api",
        "sub": "u",
        "exp": now + 60,
        "iat": now,
        "nbf": now,
        "jti": "j",
        "client_id": "c",
        "scope": "profile",
        "sid": "s",
        **overrides,
    }
    headers = {"kid": key.kid, "typ": "at+jwt"}
    return jws_variants.low_s(
        jwt.encode(claims, key.private_key, algorithm="ES256", headers=headers)
    )


async def test_verifies_a_real_token_and_checks_scopes(
    client: httpx.AsyncClient, verifier: TokenVerifier
) -> None:
    token = await access_token(client)
    verified = await verifier.verify(token, scopes=["profile"])
    assert verified.scopes == frozenset({"profile"})
    assert verified.client_id == "public"
    with pytest.raises(InsufficientScopeError):
        await verifier.verify(token, scopes=["admin"])


@pytest.mark.parametrize(
    "overrides",
    [{"aud": "other"}, {"iss": "http://evil"}, {"exp": 0}, {"nbf": 4_000_000_000}, {"sub": 5}],
)
async def test_refuses_bad_claims(
    app: FastAPI, clock: FakeClock, verifier: TokenVerifier, overrides: dict[str, Any]
) -> None:
    with pytest.raises(TokenError):
        await verifier.verify(_signed(app, clock, **overrides))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """HS256 keyed with our public key: the classic algorithm-confusion forgery."""
    header = _b64(json.dumps({"alg": "HS256", "kid": kid, "typ": "at+jwt"}).encode())
    payload = _b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(mac)}"


async def test_refuses_forged_and_confused_tokens(
    app: FastAPI, clock: FakeClock, verifier: TokenVerifier
) -> None:
    good = _signed(app, clock)
    await verifier.verify(good)
    header, payload, _ = good.split(".")
    public_pem = app.state.services.tokens._signing_key.public_key.to_pem()
    kid = app.state.services.tokens._signing_key.kid
    claims = jwt.get_unverified_claims(good)
    none_header = (
        base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": kid, "typ": "at+jwt"}).encode())
        .rstrip(b"=")
        .decode()
    )
    attacker = load_signing_key(generate_private_key_pem("ES256"), "ES256")
    forged = [
        f"{none_header}.{payload}.",
        _hs256(claims, public_pem, kid),
        jwt.encode(
            claims, attacker.private_key, algorithm="ES256", headers={"kid": kid, "typ": "at+jwt"}
        ),
        jwt.encode(
            claims, attacker.private_key, algorithm="ES256", headers={"kid": kid, "typ": "JWT"}
        ),
        f"{header}.{payload}.{'A' * 86}",
        "a.b.c.d.e",
        "garbage",
    ]
    for token in forged:
        with pytest.raises(TokenError):
            await verifier.verify(token)


@pytest.mark.parametrize(
    "variant",
    [
        jws_variants.padded,
        jws_variants.standard_alphabet,
        jws_variants.loose_trailing_bits,
        jws_variants.flipped_s,
    ],
)
async def test_refuses_other_spellings_of_a_valid_token(
    app: FastAPI, clock: FakeClock, verifier: TokenVerifier, variant: Callable[[str], str]
) -> None:
    # Only the 86 signature characters are likely to hold '-' or '_' (~94% of tokens do).
    tokens = (_signed(app, clock, jti=f"j{attempt}") for attempt in range(40))
    token = next(token for token in tokens if any(char in token for char in "-_"))
    await verifier.verify(token)
    spelled = variant(token)
    assert spelled != token
    with pytest.raises(TokenError):
        await verifier.verify(spelled)


async def test_refuses_a_high_s_signature_on_a_token_minted_by_the_issuer(
    client: httpx.AsyncClient, verifier: TokenVerifier
) -> None:
    token = await access_token(client)
    await verifier.verify(token)
    assert jws_variants.es256_s(token) <= jws_variants.P256_ORDER // 2
    with pytest.raises(TokenError):
        await verifier.verify(jws_variants.flipped_s(token))


async def test_refetches_on_unknown_kid_at_most_once_per_interval(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = TokenVerifier(
        TEST_ISSUER,
        "api",
        http=client,
        min_refetch_seconds=30,
        clock=lambda: clock().timestamp(),
    )
    await verifier.verify(_signed(app, clock))
    assert verifier.fetches == 1
    other = TokenService(
        signing_key=load_signing_key(generate_private_key_pem("ES256"), "ES256"),
        verification_keys=[],
        issuer=TEST_ISSUER,
        audience="api",
        ttl_seconds=60,
        leeway_seconds=0,
        clock=clock,
    )
    for _ in range(20):
        token = other.mint_access_token(subject="u", scopes=[], session_id="s", client_id="c")
        with pytest.raises(TokenError, match="unknown key"):
            await verifier.verify(token.token)
    assert verifier.fetches == 1
    clock.advance(31)
    with pytest.raises(TokenError, match="unknown key"):
        await verifier.verify(token.token)
    assert verifier.fetches == 2


async def test_interop_joserfc_verifies_with_jwks_and_metadata_only(
    client: httpx.AsyncClient,
) -> None:
    token = await access_token(client)
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    keys = KeySet.import_key_set((await client.get(metadata["jwks_uri"])).json())
    decoded = rfc_jwt.decode(token, keys, algorithms=["ES256"])
    assert decoded.header["typ"] == "at+jwt"
    registry = rfc_jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": metadata["issuer"]},
        aud={"essential": True, "value": "api"},
        exp={"essential": True},
        sub={"essential": True},
    )
    registry.validate(decoded.claims)
    assert decoded.claims["scope"] == "profile"


async def test_interop_authlib_password_grant_and_refresh(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await access_token(client, "authlib-user")
    oauth = AsyncOAuth2Client(
        client_id="public",
        token_endpoint_auth_method="none",
        transport=httpx.ASGITransport(app=app),
        base_url=TEST_ISSUER,
    )
    async with oauth:
        token = await oauth.fetch_token(
            f"{TEST_ISSUER}/token", username="authlib-user", password=PASSWORD
        )
        assert token["token_type"] == "Bearer"
        me = await oauth.get(f"{TEST_ISSUER}/users/me")
        assert me.json()["username"] == "authlib-user"
        renewed = await oauth.refresh_token(f"{TEST_ISSUER}/token")
        assert renewed["refresh_token"] != token["refresh_token"]
        assert renewed["expires_at"] >= int(time.time())

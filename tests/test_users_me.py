"""GET /users/me: a protected resource answering per RFC 6750 §3 and verifying per RFC 8725."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from jose import jwt
from sqlalchemy import text

from auth_service.app import PROFILE_CACHE_TTL, create_app
from auth_service.config import Settings
from auth_service.security.keys import (
    SigningKey,
    generate_private_key_pem,
    load_or_create_development_key,
    load_signing_key,
)
from auth_service.security.tokens import TokenService
from auth_service.services.accounts import disable
from auth_service.services.profiles import ProfileCache, UserProfile
from tests import jws_variants
from tests.conftest import TEST_ISSUER, FakeClock, access_token, direct_sql, register

REALM = "auth_service"
_PARAM = re.compile(r'([A-Za-z_]+)="((?:[^"\\]|\\.)*)"')


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def challenge(response: httpx.Response) -> dict[str, str]:
    """The auth-params of a single `Bearer` challenge in WWW-Authenticate."""
    header = response.headers["www-authenticate"]
    assert header.startswith("Bearer "), header
    return dict(_PARAM.findall(header))


def assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    params = challenge(response)
    assert params["realm"] == REALM
    assert params["error"] == "invalid_token"
    assert params["error_description"]
    assert "scope" not in params
    body = response.json()
    assert body["error"] == "invalid_token"
    assert set(body) == {"error", "error_description"}


def assert_no_credentials(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    # RFC 6750 §3.1: no error code when the request carried no credentials.
    assert response.headers["www-authenticate"] == f'Bearer realm="{REALM}"'
    assert "error" not in response.json()


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def app_signing_key(settings: Settings) -> SigningKey:
    """The key the running app signs with (the development key in settings.data_dir)."""
    return load_or_create_development_key(settings.data_dir, settings.signing_algorithm)


def app_key_pem(settings: Settings) -> bytes:
    return (settings.data_dir / "keys" / "signing-es256.pem").read_bytes()


def token_service(settings: Settings, app_clock: FakeClock, **overrides: Any) -> TokenService:
    """A TokenService like the app's (same key, issuer, audience, clock) unless overridden."""
    values: dict[str, Any] = {
        "clock": app_clock,
        "signing_key": app_signing_key(settings),
        "verification_keys": [],
        "issuer": settings.effective_issuer,
        "audience": settings.audience,
        "ttl_seconds": settings.access_token_ttl_seconds,
        "leeway_seconds": settings.clock_leeway_seconds,
        **overrides,
    }
    return TokenService(**values)


def valid_claims(subject: str, settings: Settings, clock: FakeClock) -> dict[str, Any]:
    now = int(clock.now.timestamp())
    return {
        "iss": settings.effective_issuer,
        "sub": subject,
        "aud": settings.audience,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": "forged-token-id-0123456789",
        "client_id": "public",
        "scope": "profile",
        "sid": "forged-session",
    }


def mint(service: TokenService, subject: str) -> str:
    issued = service.mint_access_token(
        subject=subject, scopes=["profile"], session_id="s", client_id="public"
    )
    return issued.token


# --- success -------------------------------------------------------------------------


async def test_valid_token_returns_the_user_without_hash(client: httpx.AsyncClient) -> None:
    user = await register(client)
    token = await _token_for_registered(client)
    response = await client.get("/users/me", headers=bearer(token))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"id", "username", "created_at", "email", "email_verified"}
    assert body == user
    assert body["username"] == "alice"
    created = datetime.fromisoformat(body["created_at"])
    assert created.tzinfo is not None
    assert abs(datetime.now(UTC) - created) < timedelta(minutes=5)
    assert "$argon2" not in response.text
    assert "hash" not in response.text


async def _token_for_registered(client: httpx.AsyncClient, username: str = "alice") -> str:
    response = await client.post(
        "/token",
        data={
            "grant_type": "password",
            "username": username,
            "password": "correct horse battery staple",
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


async def test_control_token_minted_by_a_matching_token_service_is_accepted(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    """The helpers below build valid tokens unless told otherwise (so negatives mean something)."""
    user = await register(client)
    response = await client.get(
        "/users/me", headers=bearer(mint(token_service(settings, clock), user["id"]))
    )
    assert response.status_code == 200, response.text
    forged = jws_variants.low_s(
        jwt.encode(
            valid_claims(user["id"], settings, clock),
            app_signing_key(settings).private_key,
            algorithm="ES256",
            headers={"kid": app_signing_key(settings).kid, "typ": "at+jwt"},
        )
    )
    assert (await client.get("/users/me", headers=bearer(forged))).status_code == 200


async def test_token_expired_within_leeway_is_still_accepted(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    user = await register(client)
    ttl = settings.access_token_ttl_seconds
    # Expired 3 s ago; the default leeway is 10 s.
    past = clock.now - timedelta(seconds=ttl + 3)
    token = mint(token_service(settings, clock, clock=lambda: past), user["id"])
    response = await client.get("/users/me", headers=bearer(token))
    assert response.status_code == 200, response.headers.get("www-authenticate")


async def test_token_from_a_replica_clock_slightly_ahead_is_accepted(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    """iat/nbf 3 s in the future (replica clock skew) is within the 10 s leeway."""
    user = await register(client)
    ahead = clock.now + timedelta(seconds=3)
    token = mint(token_service(settings, clock, clock=lambda: ahead), user["id"])
    response = await client.get("/users/me", headers=bearer(token))
    assert response.status_code == 200, response.headers.get("www-authenticate")


# --- no credentials: 401 without an error code ----------------------------------------


async def test_missing_authorization_is_401_without_error_code(client: httpx.AsyncClient) -> None:
    assert_no_credentials(await client.get("/users/me"))


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + base64.b64encode(b"alice:correct horse battery staple").decode(),
        "Basic Og==",
        "Digest username=alice",
        "",
    ],
)
async def test_non_bearer_scheme_is_treated_as_missing(
    client: httpx.AsyncClient, authorization: str
) -> None:
    assert_no_credentials(await client.get("/users/me", headers={"Authorization": authorization}))


# --- bad tokens: 401 invalid_token ------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer garbage",
        "Bearer a.b.c",
        "Bearer ..",
        "Bearer not a token",
        "Bearer eyJhbGciOiJFUzI1NiJ9.e30.",
        "Bearer ",
        "Bearer",
        "bearer garbage",
    ],
)
async def test_garbage_and_empty_bearer_are_invalid_token(
    client: httpx.AsyncClient, authorization: str
) -> None:
    assert_invalid_token(await client.get("/users/me", headers={"Authorization": authorization}))


async def test_expired_token_is_invalid_token(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    user = await register(client)
    past = clock.now - timedelta(hours=1)
    token = mint(token_service(settings, clock, clock=lambda: past), user["id"])
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


async def test_token_from_an_app_with_a_past_clock_is_expired_here(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    """Build a second app whose clock is an hour behind; its tokens are expired for us."""
    user = await register(client)
    past = clock.now - timedelta(hours=1)
    old_app = create_app(settings, clock=lambda: past)
    async with LifespanManager(old_app):
        token = mint(old_app.state.services.tokens, user["id"])
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


async def test_app_token_expires_when_the_app_clock_passes_exp_plus_leeway(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    token = await access_token(client)
    ttl, leeway = settings.access_token_ttl_seconds, settings.clock_leeway_seconds
    clock.advance(ttl + leeway - 1)
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 200
    clock.advance(2)
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


async def test_token_not_yet_valid_is_invalid_token(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    user = await register(client)
    future = clock.now + timedelta(minutes=5)
    token = mint(token_service(settings, clock, clock=lambda: future), user["id"])
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


@pytest.mark.parametrize(
    "overrides",
    [
        {"issuer": "https://evil.example"},
        {"issuer": TEST_ISSUER + "/"},
        {"audience": "other-api"},
        {"audience": ""},
    ],
)
async def test_wrong_issuer_or_audience_is_invalid_token(
    client: httpx.AsyncClient, settings: Settings, overrides: dict[str, str], clock: FakeClock
) -> None:
    user = await register(client)
    token = mint(token_service(settings, clock, **overrides), user["id"])
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


async def test_alg_none_is_invalid_token(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    user = await register(client)
    kid = app_signing_key(settings).kid
    claims = valid_claims(user["id"], settings, clock)
    for alg in ("none", "None", "NONE"):
        header = {"alg": alg, "typ": "at+jwt", "kid": kid}
        unsigned = f"{b64json(header)}.{b64json(claims)}."
        assert_invalid_token(await client.get("/users/me", headers=bearer(unsigned)))


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_signed_with_the_public_key_is_invalid_token(
    client: httpx.AsyncClient, settings: Settings, alg: str, clock: FakeClock
) -> None:
    """The classic key-confusion attack: HMAC keyed with the published public key."""
    user = await register(client)
    key = app_signing_key(settings)
    jwks = (await client.get("/.well-known/jwks.json")).json()
    secrets_to_try = [
        key.public_key.to_pem(),
        json.dumps(jwks["keys"][0]).encode(),
        json.dumps(key.public_jwk, separators=(",", ":"), sort_keys=True).encode(),
    ]
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    for secret in secrets_to_try:
        for kid in (key.kid, None):
            header = {"alg": alg, "typ": "at+jwt"} | ({"kid": kid} if kid else {})
            signing_input = (
                f"{b64json(header)}.{b64json(valid_claims(user['id'], settings, clock))}"
            )
            signature = hmac.new(secret, signing_input.encode(), digest).digest()
            token = f"{signing_input}.{b64url(signature)}"
            assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


async def test_jwe_shaped_token_is_invalid_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    header = {
        "alg": "RSA-OAEP-256",
        "enc": "A256GCM",
        "typ": "at+jwt",
        "kid": app_signing_key(settings).kid,
    }
    parts = [b64json(header), b64url(b"k" * 32), b64url(b"iv" * 6), b64url(b"c" * 40)]
    token = ".".join([*parts, b64url(b"t" * 16)])
    assert token.count(".") == 4
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


@pytest.mark.parametrize("typ", ["JWT", "jwt", "JOSE", "JWT+at", None])
async def test_token_with_wrong_or_missing_typ_is_invalid_token(
    client: httpx.AsyncClient, settings: Settings, typ: str | None, clock: FakeClock
) -> None:
    user = await register(client)
    key = app_signing_key(settings)
    # PyJWT drops the typ header when it is given as None.
    token = pyjwt.encode(
        valid_claims(user["id"], settings, clock),
        app_key_pem(settings),
        algorithm="ES256",
        headers={"kid": key.kid, "typ": typ},
    )
    assert pyjwt.get_unverified_header(token).get("typ") == typ
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


async def test_token_signed_by_another_key_with_our_kid_is_invalid_token(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    user = await register(client)
    ours = app_signing_key(settings)
    theirs = load_signing_key(generate_private_key_pem("ES256"), "ES256")
    assert theirs.kid != ours.kid
    claims = valid_claims(user["id"], settings, clock)
    for headers in (
        {"kid": ours.kid, "typ": "at+jwt"},
        # An embedded attacker JWK must never be trusted (RFC 8725 §3.10).
        {"kid": ours.kid, "typ": "at+jwt", "jwk": theirs.public_jwk},
        {"kid": theirs.kid, "typ": "at+jwt", "jwk": theirs.public_jwk},
        {"kid": theirs.kid, "typ": "at+jwt", "jku": "https://evil.example/jwks.json"},
    ):
        token = jwt.encode(claims, theirs.private_key, algorithm="ES256", headers=headers)
        assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


async def test_token_with_unknown_or_missing_kid_is_invalid_token(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    user = await register(client)
    pem = app_key_pem(settings)
    claims = valid_claims(user["id"], settings, clock)
    for headers in ({"typ": "at+jwt"}, {"typ": "at+jwt", "kid": "some-other-kid"}):
        token = pyjwt.encode(claims, pem, algorithm="ES256", headers=headers)
        assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


@pytest.mark.parametrize("claim", ["sub", "exp", "iat", "jti", "iss", "aud", "sid", "client_id"])
async def test_token_missing_a_required_claim_is_invalid_token(
    client: httpx.AsyncClient, settings: Settings, claim: str, clock: FakeClock
) -> None:
    user = await register(client)
    claims = valid_claims(user["id"], settings, clock)
    del claims[claim]
    token = pyjwt.encode(
        claims,
        app_key_pem(settings),
        algorithm="ES256",
        headers={"kid": app_signing_key(settings).kid, "typ": "at+jwt"},
    )
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


async def test_tampered_payload_is_invalid_token(client: httpx.AsyncClient) -> None:
    await register(client)
    await register(client, "mallory")
    token = await _token_for_registered(client)
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "profile admin"
    forged = f"{header}.{b64json(claims)}.{signature}"
    assert_invalid_token(await client.get("/users/me", headers=bearer(forged)))


async def test_oversized_token_is_invalid_token(client: httpx.AsyncClient) -> None:
    await register(client)
    token = await _token_for_registered(client)
    huge = token + "A" * 10_000
    assert_invalid_token(await client.get("/users/me", headers=bearer(huge)))


async def test_valid_token_of_a_deleted_user_is_invalid_token(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    token = await access_token(client)
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 200
    async with direct_sql(app) as connection:
        await connection.execute(text("DELETE FROM users WHERE username = 'alice'"))
    # The profile is cached: a row deleted behind the service's back (no revocation) is
    # served until its entry expires.
    clock.advance(PROFILE_CACHE_TTL.total_seconds() - 1)
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 200
    clock.advance(1)
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


async def test_cached_profile_of_a_user_disabled_by_another_process_is_refused_at_once(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    """Disabled through another app on the same database (and Redis, if any): 401 at once."""
    token = await access_token(client)
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 200
    other = create_app(settings, clock=clock)
    async with LifespanManager(other):
        assert await disable(other.state.services, "alice") is True
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


async def test_cached_profile_of_a_user_disabled_here_is_dropped(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    token = await access_token(client)
    user_id = (await client.get("/users/me", headers=bearer(token))).json()["id"]
    profiles = app.state.services.profiles
    assert profiles.get(user_id, datetime.now(UTC)) is not None
    assert await disable(app.state.services, "alice") is True
    assert profiles.get(user_id, datetime.now(UTC)) is None
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


def test_profile_cache_is_bounded_lru_with_ttl() -> None:
    now = datetime.now(UTC)
    cache = ProfileCache(max_entries=2, ttl=timedelta(seconds=60))
    a, b, c = (UserProfile(id=name, username=name, created_at=now) for name in "abc")
    cache.put(a, now)
    cache.put(b, now)
    assert cache.get("a", now) == a  # a is now the most recently used
    cache.put(c, now)
    assert (cache.get("a", now), cache.get("b", now), cache.get("c", now)) == (a, None, c)
    assert len(cache) == 2
    assert cache.get("a", now + timedelta(seconds=59)) == a
    assert cache.get("a", now + timedelta(seconds=60)) is None
    assert len(cache) == 1
    cache.discard("c")
    assert cache.get("c", now) is None


async def test_valid_token_of_a_disabled_user_is_invalid_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    token = await access_token(client)
    async with direct_sql(app) as connection:
        await connection.execute(text("UPDATE users SET is_active = false"))
    assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


async def test_token_for_a_subject_that_never_existed_is_invalid_token(
    client: httpx.AsyncClient, settings: Settings, clock: FakeClock
) -> None:
    await register(client)
    for subject in ("00000000-0000-0000-0000-000000000000", "x" * 200, "' OR '1'='1"):
        token = mint(token_service(settings, clock), subject)
        assert_invalid_token(await client.get("/users/me", headers=bearer(token)))


# --- scope: 403 insufficient_scope -------------------------------------------------------


async def test_token_without_profile_scope_is_403_insufficient_scope(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await register(client)
    issued = app.state.services.tokens.mint_access_token(
        subject=user["id"], scopes=[], session_id="s", client_id="public"
    )
    response = await client.get("/users/me", headers=bearer(issued.token))
    assert response.status_code == 403, response.text
    params = challenge(response)
    assert params["realm"] == REALM
    assert params["error"] == "insufficient_scope"
    assert params["scope"] == "profile"
    assert 'scope="profile"' in response.headers["www-authenticate"]
    body = response.json()
    assert body["error"] == "insufficient_scope"
    assert set(body) == {"error", "error_description"}


async def test_token_with_other_scopes_only_is_403(app: FastAPI, client: httpx.AsyncClient) -> None:
    user = await register(client)
    issued = app.state.services.tokens.mint_access_token(
        subject=user["id"], scopes=["profile:read", "Profile"], session_id="s", client_id="public"
    )
    response = await client.get("/users/me", headers=bearer(issued.token))
    assert response.status_code == 403, response.text
    assert challenge(response)["error"] == "insufficient_scope"

"""JWKS (RFC 7517) and server metadata (RFC 8414), and verifying our tokens as a stranger would."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt as pyjwt
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import text

from auth_service.app import create_app
from auth_service.config import Settings
from auth_service.db import create_engine
from tests.conftest import TEST_ISSUER, access_token, make_settings, password_grant, register

JWKS_PATH = "/.well-known/jwks.json"
METADATA_PATH = "/.well-known/oauth-authorization-server"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
PUBLIC_MEMBERS = {
    "ES256": {"kty", "crv", "x", "y", "kid", "alg", "use"},
    "RS256": {"kty", "n", "e", "kid", "alg", "use"},
}
REQUIRED_CLAIMS = ["iss", "sub", "aud", "exp", "iat", "nbf", "jti"]


async def delete_users(settings: Settings) -> None:
    """What the `app` fixture does at the end: empty the tables for the next test."""
    engine = create_engine(settings.effective_database_url)
    try:
        async with engine.begin() as connection:
            for table in ("refresh_tokens", "sessions", "revoked_access_tokens", "users"):
                await connection.execute(text(f"DELETE FROM {table}"))
    finally:
        await engine.dispose()


@asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A started app and a client for it; stopped (not cleaned) on exit."""
    application = create_app(settings)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
            yield application, http


def derived_settings(settings: Settings, data_dir: Path, **overrides: Any) -> Settings:
    """The test settings (same database, Redis and prefix) with another data dir."""
    values = settings.model_dump(exclude={"database_url", "data_dir"}) | overrides
    assert settings.database_url is not None
    return make_settings(settings.database_url, data_dir, **values)


@pytest.fixture
def rs256_settings(settings: Settings, tmp_path: Path) -> Settings:
    return derived_settings(settings, tmp_path / "rs256", signing_algorithm="RS256")


@pytest.fixture
async def rs256_client(rs256_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """Like the `client` fixture, for an app signing with RS256; users deleted afterwards."""
    try:
        async with started(rs256_settings) as (_, http):
            yield http
    finally:
        await delete_users(rs256_settings)


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 JWK thumbprint, computed independently of the service."""
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}[jwk["kty"]]
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def fetch_jwks(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get(JWKS_PATH)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_public_jwks(jwks: dict[str, Any], algorithm: str) -> dict[str, Any]:
    """One published key per algorithm (access tokens use `algorithm`, ID tokens RS256 or
    ES256), public members only, each its own kid; returns the key of `algorithm`."""
    assert set(jwks) == {"keys"}
    keys: list[dict[str, Any]] = jwks["keys"]
    assert sorted(key["alg"] for key in keys) == ["ES256", "RS256"]
    for key in keys:
        assert not PRIVATE_MEMBERS & set(key), sorted(key)
        assert set(key) == PUBLIC_MEMBERS[key["alg"]]
        assert key["use"] == "sig"
        assert key["kid"] == thumbprint(key)
    assert len({key["kid"] for key in keys}) == len(keys)
    return next(key for key in keys if key["alg"] == algorithm)


# --- JWKS ------------------------------------------------------------------------------


async def test_jwks_publishes_only_public_keys_one_per_algorithm(client: httpx.AsyncClient) -> None:
    response = await client.get(JWKS_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "public, max-age=300"
    key = assert_public_jwks(response.json(), "ES256")
    assert key["kty"] == "EC"
    assert key["crv"] == "P-256"


async def test_jwks_kid_is_the_kid_of_issued_tokens(client: httpx.AsyncClient) -> None:
    token = await access_token(client)
    header = pyjwt.get_unverified_header(token)
    key = assert_public_jwks(await fetch_jwks(client), "ES256")
    assert header["kid"] == key["kid"]
    assert header["alg"] == key["alg"] == "ES256"
    assert header["typ"] == "at+jwt"


async def test_jwks_of_rs256_app_is_public_only(rs256_client: httpx.AsyncClient) -> None:
    response = await rs256_client.get(JWKS_PATH)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    key = assert_public_jwks(response.json(), "RS256")
    assert key["kty"] == "RSA"
    modulus = base64.urlsafe_b64decode(key["n"] + "=" * (-len(key["n"]) % 4))
    assert len(modulus) * 8 >= 2048


# --- metadata --------------------------------------------------------------------------


async def test_metadata_matches_the_tokens(client: httpx.AsyncClient) -> None:
    response = await client.get(METADATA_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    metadata = response.json()
    issuer = metadata["issuer"]
    assert issuer == TEST_ISSUER
    assert metadata["token_endpoint"] == f"{issuer}/token"
    assert metadata["jwks_uri"] == f"{issuer}/.well-known/jwks.json"
    assert "password" in metadata["grant_types_supported"]
    assert "refresh_token" in metadata["grant_types_supported"]
    assert "profile" in metadata["scopes_supported"]
    assert "response_types_supported" in metadata  # required by RFC 8414 §2
    for username in ("alice", "bob"):
        claims = pyjwt.decode(
            await access_token(client, username), options={"verify_signature": False}
        )
        assert claims["iss"] == issuer


async def test_metadata_endpoints_resolve_on_this_server(client: httpx.AsyncClient) -> None:
    metadata = (await client.get(METADATA_PATH)).json()
    await register(client)
    jwks = await client.get(metadata["jwks_uri"])
    assert jwks.status_code == 200
    assert jwks.json() == await fetch_jwks(client)
    token = await client.post(
        metadata["token_endpoint"],
        data={
            "grant_type": "password",
            "username": "alice",
            "password": "correct horse battery staple",
        },
    )
    assert token.status_code == 200, token.text


async def test_issuer_with_trailing_slash_is_normalised(settings: Settings, tmp_path: Path) -> None:
    settings = derived_settings(settings, tmp_path / "slash", issuer=TEST_ISSUER + "/")
    try:
        async with started(settings) as (_, http):
            metadata = (await http.get(METADATA_PATH)).json()
            assert metadata["issuer"] == TEST_ISSUER
            assert metadata["token_endpoint"] == f"{TEST_ISSUER}/token"
            claims = pyjwt.decode(await access_token(http), options={"verify_signature": False})
            assert claims["iss"] == metadata["issuer"]
    finally:
        await delete_users(settings)


# --- interop: verify with PyJWT using only what is published over HTTP -------------------


async def verify_as_a_resource_server(client: httpx.AsyncClient, algorithm: str) -> None:
    """Another service: knows only the issuer's metadata URL and trusts nothing else."""
    user = await register(client)
    response = await password_grant(client)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]

    metadata = (await client.get(METADATA_PATH)).json()
    jwks = (await client.get(metadata["jwks_uri"])).json()
    key_set = pyjwt.PyJWKSet.from_dict(jwks)
    kid = pyjwt.get_unverified_header(token)["kid"]
    key = key_set[kid]
    assert key.algorithm_name == algorithm
    claims = pyjwt.decode(
        token,
        key,
        algorithms=[algorithm],
        audience="api",
        issuer=metadata["issuer"],
        options={"require": REQUIRED_CLAIMS},
    )
    assert claims["sub"] == user["id"]
    assert claims["scope"] == "profile"
    # Also via a single PyJWK built from the JWK dict.
    single = pyjwt.PyJWK(jwks["keys"][0])
    assert pyjwt.decode(
        token, single, algorithms=[algorithm], audience="api", issuer=metadata["issuer"]
    )

    # And the same verifier refuses a token it should refuse.
    with pytest.raises(pyjwt.InvalidAudienceError):
        pyjwt.decode(
            token, key, algorithms=[algorithm], audience="other", issuer=metadata["issuer"]
        )
    head, payload, signature = token.split(".")
    tampered = f"{head}.{payload[:-2]}{'AA' if payload[-2:] != 'AA' else 'BB'}.{signature}"
    with pytest.raises(pyjwt.InvalidTokenError):
        pyjwt.decode(tampered, key, algorithms=[algorithm], audience="api")


async def test_pyjwt_verifies_es256_tokens_from_published_documents(
    client: httpx.AsyncClient,
) -> None:
    await verify_as_a_resource_server(client, "ES256")


async def test_pyjwt_verifies_rs256_tokens_from_published_documents(
    rs256_client: httpx.AsyncClient,
) -> None:
    token = await access_token(rs256_client, "carol")
    assert pyjwt.get_unverified_header(token)["alg"] == "RS256"
    await verify_as_a_resource_server(rs256_client, "RS256")


async def test_rs256_app_serves_users_me(rs256_client: httpx.AsyncClient) -> None:
    token = await access_token(rs256_client)
    response = await rs256_client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    assert response.json()["username"] == "alice"


# --- restarts -----------------------------------------------------------------------------


async def test_key_and_users_survive_a_restart(settings: Settings) -> None:
    try:
        async with started(settings) as (_, first):
            user = await register(first)
            response = await password_grant(first)
            assert response.status_code == 200, response.text
            token = response.json()["access_token"]
            first_kid = assert_public_jwks(await fetch_jwks(first), "ES256")["kid"]
        key_file = settings.data_dir / "keys" / "signing-es256.pem"
        assert key_file.stat().st_mode & 0o777 == 0o600

        async with started(settings) as (_, second):
            second_kid = assert_public_jwks(await fetch_jwks(second), "ES256")["kid"]
            assert second_kid == first_kid == pyjwt.get_unverified_header(token)["kid"]
            me = await second.get("/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
            assert me.json() == user
            login = await password_grant(second)
            assert login.status_code == 200, login.text
            assert pyjwt.get_unverified_header(login.json()["access_token"])["kid"] == first_kid
    finally:
        await delete_users(settings)


async def test_two_concurrent_apps_from_the_same_settings_share_the_key(
    settings: Settings,
) -> None:
    try:
        async with started(settings) as (_, one), started(settings) as (_, two):
            assert await fetch_jwks(one) == await fetch_jwks(two)
            token = await access_token(one)
            me = await two.get("/users/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200, me.text
    finally:
        await delete_users(settings)


async def test_a_different_data_dir_means_a_different_key(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    """Control for the restart test: the kid really depends on the persisted key."""
    other = derived_settings(settings, tmp_path / "elsewhere")
    token = await access_token(client)
    async with started(other) as (_, stranger):
        assert await fetch_jwks(stranger) != await fetch_jwks(client)
        me = await stranger.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401

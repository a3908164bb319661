"""POST /token with the password grant: RFC 6749 §4.3, §5.1 and §5.2 on the wire."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt
from passlib.hash import bcrypt
from sqlalchemy import select, update

from auth_service.models import User
from auth_service.security.passwords import VerifyResult
from tests.conftest import (
    PASSWORD,
    TEST_ISSUER,
    at_the_argon2_floor,
    orm_session,
    password_grant,
    register,
)

NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}


def assert_oauth_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["error_description"], str)
    assert set(body) == {"error", "error_description"}
    for name, value in NO_STORE.items():
        assert response.headers[name] == value


async def test_password_grant_returns_rfc6749_token_response(client: httpx.AsyncClient) -> None:
    user = await register(client)
    response = await password_grant(client)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    for name, value in NO_STORE.items():
        assert response.headers[name] == value
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["scope"] == "profile"
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "ES256"
    assert header["typ"] == "at+jwt"
    claims = jwt.get_unverified_claims(body["access_token"])
    assert claims["sub"] == user["id"]
    assert claims["iss"] == TEST_ISSUER
    assert claims["aud"] == "api"
    assert claims["client_id"] == "public"
    assert claims["exp"] - claims["iat"] == 900
    assert claims["nbf"] == claims["iat"]
    assert len(claims["jti"]) >= 22
    assert claims["sid"]


async def test_username_is_case_insensitive_and_normalised(client: httpx.AsyncClient) -> None:
    await register(client, "Alice")
    assert (await password_grant(client, "  ALICE ")).status_code == 200
    # Fullwidth letters are NFKC-equal to ASCII ones.
    assert (await password_grant(client, "ａｌｉｃｅ")).status_code == 200


async def test_wrong_password_and_unknown_user_are_indistinguishable(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    wrong = await password_grant(client, password=PASSWORD + "!")
    unknown = await password_grant(client, username="nobody-here")
    malformed = await password_grant(client, username="x")
    for response in (wrong, unknown, malformed):
        assert_oauth_error(response, 400, "invalid_grant")
    assert wrong.json() == unknown.json() == malformed.json()
    volatile = {"date": "", "x-request-id": ""}
    assert dict(wrong.headers) | volatile == dict(unknown.headers) | volatile


class CountingHasher:
    """Wraps the real hasher and counts argon2 verifies (real and dummy)."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.verifies = 0

    async def hash(self, password: str) -> str:
        return await self.inner.hash(password)  # type: ignore[attr-defined, no-any-return]

    async def verify(self, password: str, stored_hash: str) -> VerifyResult:
        self.verifies += 1
        return await self.inner.verify(password, stored_hash)  # type: ignore[attr-defined, no-any-return]

    async def dummy_verify(self, password: str, username: str = "") -> None:
        self.verifies += 1
        await self.inner.dummy_verify(password, username)  # type: ignore[attr-defined]

    async def use_population(self, stored_hashes: Iterable[str], key: bytes) -> None:
        await self.inner.use_population(stored_hashes, key)  # type: ignore[attr-defined]

    def has_capacity(self) -> bool:
        return self.inner.has_capacity()  # type: ignore[attr-defined, no-any-return]


class FullHasher(CountingHasher):
    """A hashing pool with every slot and waiting place taken."""

    def has_capacity(self) -> bool:
        return False


class Untouchable:
    """Fails the test if the code under test uses it at all."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"used {name} while the hashing pool was full")

    def __call__(self, *args: object, **kwargs: object) -> Any:
        raise AssertionError("used while the hashing pool was full")


async def test_full_hashing_pool_refuses_logins_before_the_user_lookup(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    full = FullHasher(app.state.services.hasher)
    app.state.services = dataclasses.replace(app.state.services, hasher=full, db=Untouchable())
    for username, password in [("alice", PASSWORD), ("ghost", PASSWORD), ("x", "p")]:
        response = await password_grant(client, username, password)
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "temporarily_unavailable"
        assert int(response.headers["retry-after"]) >= 1
    assert full.verifies == 0
    # Request errors decided before hashing keep their answers.
    too_long = await password_grant(client, "alice", "p" * 2000)
    assert too_long.status_code == 400, too_long.text
    assert too_long.json()["error"] == "invalid_request"


async def test_unknown_user_costs_one_argon2_verify_like_a_wrong_password(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    counting = CountingHasher(app.state.services.hasher)
    app.state.services = dataclasses.replace(app.state.services, hasher=counting)
    for username, password in [("alice", "wrong password here!"), ("ghost", PASSWORD), ("x", "p")]:
        before = counting.verifies
        await password_grant(client, username, password)
        assert counting.verifies - before == 1, username


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({}, "invalid_request"),
        ({"username": "alice", "password": PASSWORD}, "invalid_request"),
        ({"grant_type": "password", "password": PASSWORD}, "invalid_request"),
        ({"grant_type": "password", "username": "alice"}, "invalid_request"),
        ({"grant_type": "password", "username": "alice", "password": ""}, "invalid_request"),
        # Both supported, but not for the default public client (a first-party password
        # client with no redirect URIs and no secret).
        ({"grant_type": "client_credentials"}, "unauthorized_client"),
        ({"grant_type": "authorization_code", "code": "x"}, "unauthorized_client"),
        (
            {"grant_type": "password", "username": "alice", "password": PASSWORD, "scope": "admin"},
            "invalid_scope",
        ),
        (
            {
                "grant_type": "password",
                "username": "alice",
                "password": PASSWORD,
                "scope": "profile  profile",
            },
            "invalid_scope",
        ),
    ],
)
async def test_bad_token_requests_get_rfc6749_errors(
    client: httpx.AsyncClient, form: dict[str, str], code: str
) -> None:
    await register(client)
    assert_oauth_error(await client.post("/token", data=form), 400, code)


async def test_json_body_is_invalid_request_not_422(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/token", json={"grant_type": "password", "username": "alice", "password": PASSWORD}
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_repeated_parameter_is_invalid_request(client: httpx.AsyncClient) -> None:
    await register(client)
    body = f"grant_type=password&username=alice&username=bob&password={PASSWORD}"
    response = await client.post(
        "/token", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_over_long_password_is_invalid_request_and_never_echoed(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    long_password = "é" * 1025
    response = await password_grant(client, password=long_password)
    assert_oauth_error(response, 400, "invalid_request")
    assert long_password not in response.text


async def test_swagger_empty_basic_credentials_mean_no_client(client: httpx.AsyncClient) -> None:
    await register(client)
    response = await client.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers={"Authorization": "Basic Og=="},
    )
    assert response.status_code == 200, response.text


async def test_public_client_may_name_itself(client: httpx.AsyncClient) -> None:
    await register(client)
    assert (await password_grant(client, client_id="public")).status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + base64.b64encode(b"public:some-secret").decode(),
        "Basic " + base64.b64encode(b"stranger:").decode(),
        "Basic not-base64!!",
    ],
)
async def test_bad_client_authentication_is_401_invalid_client(
    client: httpx.AsyncClient, authorization: str
) -> None:
    await register(client)
    response = await client.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        headers={"Authorization": authorization},
    )
    assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_unknown_client_id_in_body_is_invalid_client(client: httpx.AsyncClient) -> None:
    await register(client)
    assert_oauth_error(await password_grant(client, client_id="stranger"), 401, "invalid_client")


async def test_two_client_authentication_methods_are_invalid_request(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    response = await client.post(
        "/token",
        data={
            "grant_type": "password",
            "username": "alice",
            "password": PASSWORD,
            "client_id": "public",
        },
        headers={"Authorization": "Basic " + base64.b64encode(b"public:").decode()},
    )
    assert_oauth_error(response, 400, "invalid_request")


async def test_disabled_user_gets_the_same_invalid_grant(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    async with orm_session(app) as session:
        await session.execute(update(User).values(is_active=False))
    unknown = await password_grant(client, username="nobody-here")
    disabled = await password_grant(client)
    assert_oauth_error(disabled, 400, "invalid_grant")
    assert disabled.json() == unknown.json()


@at_the_argon2_floor
async def test_legacy_bcrypt_hash_is_upgraded_to_argon2id_on_login(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    legacy = bcrypt.using(rounds=4).hash(PASSWORD)
    async with orm_session(app) as session:
        await session.execute(update(User).values(password_hash=legacy))
    assert (await password_grant(client)).status_code == 200
    async with orm_session(app) as session:
        stored = (await session.execute(select(User.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert (await password_grant(client)).status_code == 200

"""Registered clients, client authentication, scopes, and RFC 7662 introspection."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt
from sqlalchemy import select

from auth_service.errors import ClientExists
from auth_service.models import OAuthClient
from auth_service.security.keys import generate_private_key_pem, load_signing_key
from auth_service.security.tokens import TokenService
from auth_service.services.accounts import set_scopes
from auth_service.services.clients import register_client
from tests.conftest import PASSWORD, TEST_ISSUER, FakeClock, orm_session, register


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = f"{client_id}:{secret}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


async def add_client(
    app: FastAPI,
    client_id: str,
    *,
    confidential: bool = True,
    grants: tuple[str, ...] = ("password", "refresh_token"),
    scopes: tuple[str, ...] = ("profile",),
    introspection: bool = False,
) -> str | None:
    new = await register_client(
        app.state.services,
        client_id,
        confidential=confidential,
        grant_types=frozenset(grants),
        scopes=frozenset(scopes),
        introspection=introspection,
        first_party="password" in grants,
    )
    return new.secret


async def token_request(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None, **form: str
) -> httpx.Response:
    data = {"grant_type": "password", "username": "alice", "password": PASSWORD, **form}
    return await client.post("/token", data=data, headers=headers or {})


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == code


async def test_confidential_client_authenticates_by_basic_or_post(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    secret = await add_client(app, "backend")
    assert secret is not None
    by_basic = await token_request(client, basic("backend", secret))
    by_post = await token_request(client, client_id="backend", client_secret=secret)
    for response in (by_basic, by_post):
        assert response.status_code == 200, response.text
        claims = jwt.get_unverified_claims(response.json()["access_token"])
        assert claims["client_id"] == "backend"


async def test_client_secrets_are_stored_hashed(app: FastAPI) -> None:
    secret = await add_client(app, "backend")
    assert secret is not None
    async with orm_session(app) as db:
        row = (await db.execute(select(OAuthClient))).scalar_one()
    assert row.secret_hash is not None
    assert secret not in row.secret_hash


@pytest.mark.parametrize(
    "credentials",
    [
        {"headers": basic("backend", "wrong")},
        {"form": {"client_id": "backend", "client_secret": "wrong"}},
        {"form": {"client_id": "backend"}},  # confidential without its secret
        {"headers": basic("nobody", "whatever")},
        {"form": {"client_id": "mobile", "client_secret": "public clients have none"}},
    ],
)
async def test_failed_client_authentication_is_401_invalid_client(
    app: FastAPI, client: httpx.AsyncClient, credentials: dict[str, Any]
) -> None:
    await register(client)
    await add_client(app, "backend")
    await add_client(app, "mobile", confidential=False)
    response = await token_request(
        client, credentials.get("headers"), **credentials.get("form", {})
    )
    assert_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_registered_public_client_names_itself(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    await add_client(app, "mobile", confidential=False)
    response = await token_request(client, client_id="mobile")
    assert response.status_code == 200
    assert jwt.get_unverified_claims(response.json()["access_token"])["client_id"] == "mobile"


async def test_client_limited_to_a_grant_type(app: FastAPI, client: httpx.AsyncClient) -> None:
    await register(client)
    secret = await add_client(app, "backend", grants=("password",))
    assert secret is not None
    tokens = (await token_request(client, basic("backend", secret))).json()
    response = await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers=basic("backend", secret),
    )
    assert_error(response, 400, "unauthorized_client")


async def test_a_third_party_client_stored_with_the_password_grant_may_not_use_it(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """A row registered before the first-party rule still cannot collect a password."""
    await register(client)
    secret = await add_client(app, "legacy", grants=("password",))
    assert secret is not None
    async with orm_session(app) as db:
        row = (await db.execute(select(OAuthClient))).scalar_one()
        row.first_party = False
    assert_error(await token_request(client, basic("legacy", secret)), 400, "unauthorized_client")


async def test_refresh_token_is_bound_to_its_client(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    secret = await add_client(app, "backend")
    assert secret is not None
    tokens = (await token_request(client, basic("backend", secret))).json()
    stolen = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert_error(stolen, 400, "invalid_grant")


@pytest.mark.settings(default_client_enabled=False)
async def test_default_client_can_be_switched_off(client: httpx.AsyncClient) -> None:
    await register(client)
    assert_error(await token_request(client), 401, "invalid_client")
    swagger = await token_request(client, {"Authorization": "Basic Og=="})
    assert_error(swagger, 401, "invalid_client")


async def test_scopes_are_limited_by_user_and_client(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    assert_error(await token_request(client, scope="admin"), 400, "invalid_scope")
    assert await set_scopes(app.state.services, "alice", frozenset({"profile", "admin"}))
    granted = await token_request(client, scope="profile admin")
    assert granted.status_code == 200
    assert granted.json()["scope"] == "admin profile"
    # Without a request, only the default scope is granted.
    assert (await token_request(client)).json()["scope"] == "profile"
    secret = await add_client(app, "backend", scopes=("profile",))
    assert secret is not None
    narrow = await token_request(client, basic("backend", secret), scope="admin")
    assert_error(narrow, 400, "invalid_scope")


async def test_a_session_holding_a_scope_taken_from_the_user_cannot_refresh(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    await set_scopes(app.state.services, "alice", frozenset({"profile", "admin"}))
    tokens = (await token_request(client, scope="profile admin")).json()
    await set_scopes(app.state.services, "alice", frozenset({"profile"}))
    renewed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    # The session ended with the scope (tests/test_scope_removal.py has the rest).
    assert_error(renewed, 400, "invalid_grant")


async def test_admin_operations_need_the_admin_scope(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client, "alice")
    await register(client, "mallory")
    plain = (await token_request(client)).json()["access_token"]
    forbidden = await client.post(
        "/admin/users/mallory/disable", headers={"Authorization": f"Bearer {plain}"}
    )
    assert forbidden.status_code == 403
    assert 'error="insufficient_scope"' in forbidden.headers["www-authenticate"]

    await set_scopes(app.state.services, "alice", frozenset({"profile", "admin"}))
    admin = (await token_request(client, scope="admin")).json()["access_token"]
    headers = {"Authorization": f"Bearer {admin}"}
    assert (await client.post("/admin/users/mallory/disable", headers=headers)).status_code == 204
    mallory = await token_request(client, username="mallory")
    assert_error(mallory, 400, "invalid_grant")
    missing = await client.post("/admin/users/nobody-here/disable", headers=headers)
    assert_error(missing, 404, "not_found")
    # An admin-only token cannot read a profile: scopes are not implied.
    assert (await client.get("/users/me", headers=headers)).status_code == 403


# --- introspection -------------------------------------------------------------------


async def introspect(
    client: httpx.AsyncClient, token: str, secret: str, **form: str
) -> httpx.Response:
    return await client.post(
        "/introspect", data={"token": token, **form}, headers=basic("resource-server", secret)
    )


@pytest.fixture
async def resource_secret(app: FastAPI) -> str:
    secret = await add_client(app, "resource-server", grants=(), introspection=True)
    assert secret is not None
    return secret


async def test_introspection_describes_an_active_access_token(
    client: httpx.AsyncClient, resource_secret: str
) -> None:
    user = await register(client)
    tokens = (await token_request(client)).json()
    response = await introspect(client, tokens["access_token"], resource_secret)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    claims = jwt.get_unverified_claims(tokens["access_token"])
    assert body == {
        "active": True,
        "token_type": "Bearer",
        "scope": "profile",
        "client_id": "public",
        "username": "alice",
        "sub": user["id"],
        "aud": "api",
        "iss": TEST_ISSUER,
        "exp": claims["exp"],
        "iat": claims["iat"],
        "nbf": claims["nbf"],
        "jti": claims["jti"],
        "sid": claims["sid"],
    }


async def test_introspection_of_refresh_tokens(
    client: httpx.AsyncClient, resource_secret: str
) -> None:
    await register(client)
    tokens = (await token_request(client)).json()
    body = (
        await introspect(
            client, tokens["refresh_token"], resource_secret, token_type_hint="refresh_token"
        )
    ).json()
    assert body["active"] is True
    assert body["token_type"] == "refresh_token"
    await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    spent = await introspect(client, tokens["refresh_token"], resource_secret)
    assert spent.json() == {"active": False}


async def test_introspection_inactive_is_exactly_active_false(
    app: FastAPI, client: httpx.AsyncClient, resource_secret: str, clock: FakeClock
) -> None:
    await register(client)
    logged_out = (await token_request(client)).json()["access_token"]
    await client.post("/logout", headers={"Authorization": f"Bearer {logged_out}"})
    foreign_key = load_signing_key(generate_private_key_pem("ES256"), "ES256")
    foreign = TokenService(
        signing_key=foreign_key,
        verification_keys=[],
        issuer=TEST_ISSUER,
        audience="api",
        ttl_seconds=900,
        leeway_seconds=10,
    ).mint_access_token(subject="x", scopes=["profile"], session_id="s", client_id="public")
    expiring = (await token_request(client)).json()["access_token"]
    for token in (logged_out, foreign.token, "garbage", "a.b.c", "x" * 300):
        response = await introspect(client, token, resource_secret)
        assert response.status_code == 200
        assert response.json() == {"active": False}, token
    clock.advance(900 + 11)
    assert (await introspect(client, expiring, resource_secret)).json() == {"active": False}


async def test_introspection_only_for_clients_granted_it(
    app: FastAPI, client: httpx.AsyncClient, resource_secret: str
) -> None:
    await register(client)
    token = (await token_request(client)).json()["access_token"]
    await add_client(app, "mobile", confidential=False)
    backend_secret = await add_client(app, "backend")  # confidential, not granted introspection
    assert backend_secret is not None
    for headers, form in (
        ({}, {}),
        ({"Authorization": "Basic Og=="}, {}),
        ({}, {"client_id": "mobile"}),
        (basic("resource-server", "wrong"), {}),
        (basic("backend", backend_secret), {}),
        ({}, {"client_id": "backend", "client_secret": backend_secret}),
    ):
        response = await client.post("/introspect", data={"token": token, **form}, headers=headers)
        assert_error(response, 401, "invalid_client")
    missing = await client.post(
        "/introspect", data={}, headers=basic("resource-server", resource_secret)
    )
    assert_error(missing, 400, "invalid_request")


async def test_revoke_with_a_foreign_client_does_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    secret = await add_client(app, "backend")
    assert secret is not None
    tokens = (await token_request(client)).json()  # issued to the default public client
    for token in (tokens["access_token"], tokens["refresh_token"]):
        response = await client.post(
            "/revoke", data={"token": token}, headers=basic("backend", secret)
        )
        assert response.status_code == 200
    me = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    renewed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert renewed.status_code == 200


async def test_metadata_lists_client_authentication_and_endpoints(
    client: httpx.AsyncClient,
) -> None:
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["introspection_endpoint"] == f"{TEST_ISSUER}/introspect"
    assert metadata["token_endpoint_auth_methods_supported"] == [
        "none",
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]
    assert metadata["introspection_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ]
    for endpoint in ("token", "revocation", "introspection"):
        algs = metadata[f"{endpoint}_endpoint_auth_signing_alg_values_supported"]
        assert algs == ["ES256", "RS256"]
    assert "client_credentials" in metadata["grant_types_supported"]
    assert set(metadata["scopes_supported"]) == {"profile", "admin", "openid", "email"}


@pytest.mark.parametrize("confidential", [True, False])
async def test_the_default_clients_id_is_reserved(
    app: FastAPI, client: httpx.AsyncClient, confidential: bool
) -> None:
    # A confidential "public" client was reachable without its secret: no secret means
    # the default public client, with every grant and scope.
    with pytest.raises(ClientExists, match="reserved for the default public client"):
        await add_client(app, "public", confidential=confidential, scopes=("profile",))
    await register(client)
    assert (await token_request(client, client_id="public")).status_code == 200


async def test_basic_credentials_are_form_urlencoded(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # RFC 6749 §2.3.1: the id and secret are form-urlencoded before Base64, so '+' is a space.
    await register(client)
    secret = await add_client(app, "back end")
    assert secret is not None
    response = await token_request(client, basic("back+end", secret))
    assert response.status_code == 200, response.text
    assert jwt.get_unverified_claims(response.json()["access_token"])["client_id"] == "back end"
    assert_error(await token_request(client, basic("back%2Bend", secret)), 401, "invalid_client")

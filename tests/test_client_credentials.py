"""grant_type=client_credentials (RFC 6749 §4.4): a confidential client's own tokens, and
their revocation when the client is disabled, re-keyed or removed."""

from __future__ import annotations

import uuid
import warnings
from typing import Any

import authlib.deprecate
import httpx
import pytest
from fastapi import FastAPI
from jose import jwt

from auth_service.config import Settings
from auth_service.repositories import ClientRow
from auth_service.security.client_secrets import hash_client_secret
from auth_service.services.client_admin import (
    disable_client,
    enable_client,
    remove_client,
    rotate_secret,
)
from auth_service.services.clients import register_client
from auth_service.verify import Introspector, TokenError, TokenVerifier
from tests.conftest import TEST_ISSUER, Backend, FakeClock, access_token
from tests.test_clients import basic
from tests.test_denylist_ttl import wipe_store

warnings.filterwarnings("ignore", category=authlib.deprecate.AuthlibDeprecationWarning)
from authlib.integrations.httpx_client import AsyncOAuth2Client  # noqa: E402

GRANT = {"grant_type": "client_credentials"}


async def add_service(
    app: FastAPI,
    client_id: str = "billing",
    *,
    scopes: tuple[str, ...] = ("profile", "admin"),
    grants: tuple[str, ...] = ("client_credentials",),
    introspection: bool = False,
) -> str:
    new = await register_client(
        app.state.services,
        client_id,
        confidential=True,
        grant_types=frozenset(grants),
        scopes=frozenset(scopes),
        introspection=introspection,
        first_party="password" in grants,
    )
    assert new.secret is not None
    return new.secret


async def service_token(
    client: httpx.AsyncClient, client_id: str, secret: str, **form: str
) -> httpx.Response:
    return await client.post("/token", data={**GRANT, **form}, headers=basic(client_id, secret))


async def introspect(client: httpx.AsyncClient, rs_secret: str, token: str) -> dict[str, Any]:
    response = await client.post(
        "/introspect", data={"token": token}, headers=basic("rs", rs_secret)
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def claims(token: str) -> dict[str, Any]:
    return dict(jwt.get_unverified_claims(token))


async def test_a_confidential_client_gets_its_own_token_without_refresh(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    secret = await add_service(app)
    response = await service_token(client, "billing", secret)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}  # §4.4.3
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "admin profile"  # no scope asked: all of the client's
    token = claims(body["access_token"])
    assert token["sub"] == token["client_id"] == "billing"
    assert token["iss"] == TEST_ISSUER
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    # The same sid (the client's token epoch) on every token until the client changes.
    again = claims((await service_token(client, "billing", secret)).json()["access_token"])
    assert again["sid"] == token["sid"]
    assert again["jti"] != token["jti"]
    by_post = await client.post(
        "/token", data={**GRANT, "client_id": "billing", "client_secret": secret}
    )
    assert by_post.status_code == 200, by_post.text


async def test_scopes_are_the_clients_only(app: FastAPI, client: httpx.AsyncClient) -> None:
    secret = await add_service(app, scopes=("profile",))
    narrowed = await service_token(client, "billing", secret, scope="profile")
    assert narrowed.json()["scope"] == "profile"
    refused = await service_token(client, "billing", secret, scope="profile admin")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_scope"
    unknown = await service_token(client, "billing", secret, scope="superpowers")
    assert unknown.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    ("who", "status", "error"),
    [
        ("no client", 400, "unauthorized_client"),  # the default public client may not
        ("public client", 400, "unauthorized_client"),
        ("wrong secret", 401, "invalid_client"),
        ("not granted", 400, "unauthorized_client"),
    ],
)
async def test_only_confidential_clients_granted_it(
    app: FastAPI, client: httpx.AsyncClient, who: str, status: int, error: str
) -> None:
    await add_service(app)
    other = await add_service(app, "web", grants=("password",))
    await register_client(
        app.state.services,
        "mobile",
        confidential=False,
        grant_types=frozenset({"password"}),
        scopes=frozenset({"profile"}),
        first_party=True,
    )
    requests: dict[str, dict[str, Any]] = {
        "no client": {"data": GRANT},
        "public client": {"data": {**GRANT, "client_id": "mobile"}},
        "wrong secret": {"data": GRANT, "headers": basic("billing", "wrong")},
        "not granted": {"data": GRANT, "headers": basic("web", other)},
    }
    response = await client.post("/token", **requests[who])
    assert response.status_code == status, response.text
    assert response.json()["error"] == error


async def test_a_legacy_uuid_shaped_client_id_never_becomes_a_subject(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # Registration refuses such ids now; one stored before that is refused at issue, so
    # no token can ever carry a user's id as a client's subject.
    user_token = await access_token(client)
    user_id = claims(user_token)["sub"]
    assert str(uuid.UUID(user_id)) == user_id  # user ids are UUIDs by construction
    row = ClientRow(
        client_id=user_id,
        secret_hash=hash_client_secret("s" * 43),
        confidential=True,
        grant_types="client_credentials",
        scopes="profile",
        created_at=app.state.services.clock(),
        introspection=False,
        token_epoch="legacy-epoch",
    )
    await app.state.services.db.clients.add(row)
    response = await service_token(client, user_id, "s" * 43)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "unauthorized_client"


@pytest.mark.settings(default_client_enabled=False)
async def test_no_client_at_all_is_invalid_client(client: httpx.AsyncClient) -> None:
    response = await client.post("/token", data=GRANT)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize("path", ["/users/me", "/sessions"])
async def test_user_routes_refuse_a_client_token_cleanly(
    app: FastAPI, client: httpx.AsyncClient, path: str
) -> None:
    secret = await add_service(app)
    token = (await service_token(client, "billing", secret)).json()["access_token"]
    response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="auth_service", error="invalid_token"')
    assert response.json()["error"] == "invalid_token"


async def test_introspection_says_client_and_no_user(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    secret = await add_service(app)
    rs = await add_service(app, "rs", grants=(), introspection=True)
    token = (await service_token(client, "billing", secret)).json()["access_token"]
    found = await introspect(client, rs, token)
    assert found["active"] is True
    assert found["client_id"] == found["sub"] == "billing"
    assert "username" not in found
    assert found["scope"] == "admin profile"


@pytest.mark.parametrize("change", ["disable", "rotate", "remove"])
async def test_a_client_change_revokes_its_live_tokens_at_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    backend: Backend,
    settings: Settings,
    change: str,
) -> None:
    ctx = app.state.services
    secret = await add_service(app)
    rs = await add_service(app, "rs", grants=(), introspection=True)
    before = (await service_token(client, "billing", secret)).json()["access_token"]
    assert (await introspect(client, rs, before))["active"] is True
    new_secret = None
    if change == "disable":
        assert await disable_client(ctx, "billing")
    elif change == "rotate":
        new_secret = await rotate_secret(ctx, "billing")
        assert new_secret is not None
        assert new_secret != secret
    else:
        assert await remove_client(ctx, "billing")
    assert await introspect(client, rs, before) == {"active": False}
    # The durable record: a store that lost everything reseeds the revocation from SQL.
    await wipe_store(app, backend, settings)
    assert await introspect(client, rs, before) == {"active": False}
    old = await service_token(client, "billing", secret)
    assert old.status_code == 401
    assert old.json()["error"] == "invalid_client"
    if new_secret is not None:
        after = await service_token(client, "billing", new_secret)
        assert after.status_code == 200, after.text
        token = after.json()["access_token"]
        assert claims(token)["sid"] != claims(before)["sid"]
        assert (await introspect(client, rs, token))["active"] is True


async def test_enabling_a_client_again_keeps_old_tokens_revoked(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    ctx = app.state.services
    secret = await add_service(app)
    rs = await add_service(app, "rs", grants=(), introspection=True)
    before = (await service_token(client, "billing", secret)).json()["access_token"]
    assert await disable_client(ctx, "billing")
    assert await enable_client(ctx, "billing")
    assert await introspect(client, rs, before) == {"active": False}
    after = (await service_token(client, "billing", secret)).json()["access_token"]
    assert (await introspect(client, rs, after))["active"] is True
    assert not await disable_client(ctx, "nobody")
    assert await rotate_secret(ctx, "nobody") is None


async def test_a_disabled_client_cannot_use_any_grant(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    secret = await add_service(app, grants=("client_credentials", "password"))
    assert await disable_client(app.state.services, "billing")
    form = {"grant_type": "password", "username": "x", "password": "y"}
    response = await client.post("/token", data=form, headers=basic("billing", secret))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_verify_accepts_a_client_token_and_sees_its_revocation(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret = await add_service(app, scopes=("profile",))
    rs = await add_service(app, "rs", grants=(), introspection=True)
    token = (await service_token(client, "billing", secret)).json()["access_token"]
    local = TokenVerifier(TEST_ISSUER, "api", http=client, clock=lambda: clock().timestamp())
    verified = await local.verify(token, scopes=["profile"])
    assert verified.is_client
    assert verified.subject == verified.client_id == "billing"
    checked = TokenVerifier(
        TEST_ISSUER,
        "api",
        http=client,
        clock=lambda: clock().timestamp(),
        introspector=Introspector("rs", rs, cache_seconds=0),
    )
    assert (await checked.verify(token)).is_client
    assert await disable_client(app.state.services, "billing")
    with pytest.raises(TokenError):
        await checked.verify(token)
    user = await local.verify(await access_token(client))
    assert not user.is_client


async def test_interop_authlib_client_credentials_with_client_secret_post(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    secret = await add_service(app, scopes=("profile",))
    oauth = AsyncOAuth2Client(
        client_id="billing",
        client_secret=secret,
        token_endpoint_auth_method="client_secret_post",
        transport=httpx.ASGITransport(app=app),
        base_url=TEST_ISSUER,
    )
    async with oauth:
        token = await oauth.fetch_token(f"{TEST_ISSUER}/token", grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert "refresh_token" not in token
    assert claims(token["access_token"])["sub"] == "billing"

"""The client model OpenID Connect needs: registration rules, stored on both backends."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from joserfc.jwk import ECKey, RSAKey

from auth_service.errors import (
    ClientExists,
    InvalidClientMetadata,
    InvalidRedirectUri,
    InvalidRequest,
)
from auth_service.services.clients import list_clients, register_client
from auth_service.services.context import ServiceContext

CB = "https://rp.example/cb"


def b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def services(app: FastAPI) -> ServiceContext:
    ctx: ServiceContext = app.state.services
    return ctx


async def add(app: FastAPI, client_id: str = "rp", **options: Any) -> Any:
    settings: dict[str, Any] = {
        "confidential": True,
        "grant_types": frozenset({"authorization_code", "refresh_token"}),
        "scopes": frozenset({"profile"}),
        "redirect_uris": [CB],
        **options,
    }
    return await register_client(services(app), client_id, **settings)


async def stored(app: FastAPI, client_id: str) -> Any:
    found = [c for c in await list_clients(services(app)) if c.client_id == client_id]
    assert len(found) == 1
    return found[0]


async def test_a_confidential_oidc_client_is_stored_with_every_property(app: FastAPI) -> None:
    new = await add(
        app,
        redirect_uris=[CB, "http://127.0.0.1/cb", CB],
        post_logout_redirect_uris=["https://rp.example/bye"],
        first_party=True,
        id_token_alg="ES256",
    )
    assert new.secret is not None
    client = await stored(app, "rp")
    assert client.redirect_uris == (CB, "http://127.0.0.1/cb")  # once each, in order
    assert client.post_logout_redirect_uris == ("https://rp.example/bye",)
    assert client.first_party is True
    assert client.require_pkce is False  # confidential: opt-in (the conformance plans send none)
    assert client.id_token_alg == "ES256"
    assert client.auth_method == "client_secret_basic"
    assert client.jwks is None
    assert client.grant_types == {"authorization_code", "refresh_token"}


async def test_defaults_are_third_party_rs256(app: FastAPI) -> None:
    await add(app)
    client = await stored(app, "rp")
    assert (client.first_party, client.require_pkce, client.id_token_alg) == (
        False,
        False,
        "RS256",
    )
    await add(app, "rp-pkce", require_pkce=True)
    assert (await stored(app, "rp-pkce")).require_pkce is True


async def test_a_public_client_always_requires_pkce(app: FastAPI) -> None:
    new = await add(app, "spa", confidential=False, require_pkce=False)
    assert new.secret is None
    client = await stored(app, "spa")
    assert client.require_pkce is True
    assert client.auth_method == "none"


async def test_authorization_code_needs_a_redirect_uri(app: FastAPI) -> None:
    with pytest.raises(InvalidClientMetadata, match="redirect URI"):
        await add(app, redirect_uris=[])
    # Other grants need none.
    await add(app, "pw", grant_types=frozenset({"password"}), redirect_uris=[], first_party=True)


async def test_only_a_first_party_client_may_use_the_password_grant(app: FastAPI) -> None:
    """RFC 9700 §2.4: a third-party client must never see the user's password."""
    with pytest.raises(InvalidClientMetadata, match="first-party"):
        await add(app, "rp-pw", grant_types=frozenset({"password"}), redirect_uris=[])
    assert [c.client_id for c in await list_clients(services(app))] == []
    new = await add(app, "own", grant_types=frozenset({"password"}), first_party=True)
    assert "password" in new.client.grant_types


@pytest.mark.parametrize(
    "uri", ["/cb", "https://rp.example/cb#x", "https://u@rp.example/cb", "javascript:x"]
)
async def test_a_bad_redirect_uri_is_refused(app: FastAPI, uri: str) -> None:
    with pytest.raises(InvalidRedirectUri):
        await add(app, redirect_uris=[CB, uri])
    with pytest.raises(InvalidRedirectUri):
        await add(app, post_logout_redirect_uris=[uri])
    assert [c.client_id for c in await list_clients(services(app))] == []


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"id_token_alg": "HS256"}, "RS256 or ES256"),
        ({"id_token_alg": "none"}, "RS256 or ES256"),
        ({"grant_types": frozenset({"implicit"})}, "unknown grant types"),
        (
            {"confidential": False, "grant_types": frozenset({"client_credentials"})},
            "confidential clients only",
        ),
    ],
)
async def test_contradictory_settings_are_refused(
    app: FastAPI, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidClientMetadata, match=message):
        await add(app, **options)


async def test_a_public_client_cannot_introspect(app: FastAPI) -> None:
    with pytest.raises(InvalidRequest):
        await add(app, confidential=False, introspection=True)


@pytest.mark.parametrize(
    "client_id",
    [
        "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
        "3F2504E0-4F89-41D3-9A0C-0305E82C3301",
        "3f2504e04f8941d39a0c0305e82c3301",
        "{3f2504e0-4f89-41d3-9a0c-0305e82c3301}",
        "urn:uuid:3f2504e0-4f89-41d3-9a0c-0305e82c3301",
    ],
)
async def test_a_client_id_cannot_look_like_a_user_id(app: FastAPI, client_id: str) -> None:
    with pytest.raises(InvalidClientMetadata, match="UUID"):
        await add(app, client_id)


@pytest.mark.parametrize("client_id", ["", "tab\there", "new\nline", "x" * 129])
async def test_a_client_id_is_short_and_printable(app: FastAPI, client_id: str) -> None:
    with pytest.raises(InvalidClientMetadata):
        await add(app, client_id)


async def test_a_client_id_is_registered_once(app: FastAPI) -> None:
    await add(app)
    with pytest.raises(ClientExists):
        await add(app)


async def test_a_jwks_client_is_confidential_without_a_secret(app: FastAPI) -> None:
    rsa_key = RSAKey.generate_key(2048, private=True)
    ec = ECKey.generate_key("P-256", private=True)
    document = json.dumps({"keys": [rsa_key.as_dict(private=False), ec.as_dict(private=False)]})
    new = await add(app, confidential=False, jwks=document)
    assert new.secret is None
    client = await stored(app, "rp")
    assert client.confidential is True
    assert client.auth_method == "private_key_jwt"
    keys = json.loads(client.jwks)["keys"]
    assert [(key["kty"], key["alg"]) for key in keys] == [("RSA", "RS256"), ("EC", "ES256")]
    assert all("d" not in key for key in keys)
    assert keys[0]["kid"] == rsa_key.thumbprint()  # RFC 7638 when the file names none


@pytest.mark.parametrize(
    ("jwks", "message"),
    [
        ("not json", "not JSON"),
        ('{"keys": []}', "1 to 10 keys"),
        ("PRIVATE", "private key material"),
        ("RSA1024", ">= 2048 bits"),
        ("P384", "P-256"),
        ("OKP", "only RSA"),
        ("SYMMETRIC", "private key material"),
        ("RSA-AS-ES256", "only be registered for RS256"),
        ("ENC", "signature keys"),
    ],
)
async def test_an_unusable_jwks_is_refused(app: FastAPI, jwks: str, message: str) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    samples: dict[str, Callable[[], dict[str, Any]]] = {
        "PRIVATE": lambda: ECKey.generate_key("P-256", private=True).as_dict(private=True),
        "RSA1024": lambda: {
            "kty": "RSA",
            "n": b64(weak.public_key().public_numbers().n),
            "e": "AQAB",
        },
        "SYMMETRIC": lambda: {"kty": "oct", "k": "c2VjcmV0"},
        "P384": lambda: ECKey.generate_key("P-384", private=True).as_dict(private=False),
        "OKP": lambda: {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
        },
        "RSA-AS-ES256": lambda: {
            **RSAKey.generate_key(2048, private=True).as_dict(private=False),
            "alg": "ES256",
        },
        "ENC": lambda: {
            **ECKey.generate_key("P-256", private=True).as_dict(private=False),
            "use": "enc",
        },
    }
    document = json.dumps({"keys": [samples[jwks]()]}) if jwks in samples else jwks
    with pytest.raises(InvalidClientMetadata, match=message):
        await add(app, jwks=document)

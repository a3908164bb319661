"""private_key_jwt client authentication (RFC 7523 §2.2): assertions built by joserfc,
PyJWT and Authlib, every claim rule, and single use of `jti`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import warnings
from typing import Any

import authlib.deprecate
import httpx
import jwt as pyjwt
import pytest
from fastapi import FastAPI
from joserfc import jwt as rfc_jwt
from joserfc.jwk import ECKey, RSAKey

from auth_service.services.client_admin import disable_client, replace_keys
from auth_service.services.clients import register_client
from tests.conftest import TEST_ISSUER, FakeClock
from tests.test_clients import basic

warnings.filterwarnings("ignore", category=authlib.deprecate.AuthlibDeprecationWarning)
from authlib.integrations.httpx_client import AsyncOAuth2Client  # noqa: E402
from authlib.oauth2.rfc7523 import PrivateKeyJWT  # noqa: E402

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
EC_KEY = ECKey.generate_key("P-256", private=True, auto_kid=True)
RSA_KEY = RSAKey.generate_key(2048, private=True, auto_kid=True)


async def add_jwt_client(app: FastAPI, client_id: str = "svc", *keys: Any) -> None:
    document = {"keys": [key.as_dict(private=False) for key in (keys or (EC_KEY, RSA_KEY))]}
    new = await register_client(
        app.state.services,
        client_id,
        confidential=True,
        grant_types=frozenset({"client_credentials"}),
        scopes=frozenset({"profile"}),
        jwks=json.dumps(document),
    )
    assert new.secret is None


def assertion_claims(clock: FakeClock, **overrides: Any) -> dict[str, Any]:
    now = int(clock().timestamp())
    claims = {
        "iss": "svc",
        "sub": "svc",
        "aud": TEST_ISSUER,
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(16),
        **overrides,
    }
    return {name: value for name, value in claims.items() if value is not None}


def es256(claims: dict[str, Any], key: ECKey = EC_KEY, **header: Any) -> str:
    return rfc_jwt.encode({"alg": "ES256", "kid": key.kid, **header}, claims, key)


def rs256_pyjwt(claims: dict[str, Any], key: RSAKey = RSA_KEY) -> str:
    pem = key.as_pem(private=True)
    return pyjwt.encode(claims, pem, algorithm="RS256", headers={"kid": key.kid})


def _hs256(header: dict[str, Any], claims: dict[str, Any], key: bytes) -> str:
    """An HS256 JWT by hand (the libraries refuse public keys as HMAC secrets)."""

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


async def token_with(client: httpx.AsyncClient, assertion: str, **extra: str) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
        **extra,
    }
    return await client.post("/token", data=form)


def assert_invalid_client(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


async def test_es256_and_rs256_assertions_from_independent_libraries(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await add_jwt_client(app)
    for assertion in (es256(assertion_claims(clock)), rs256_pyjwt(assertion_claims(clock))):
        response = await token_with(client, assertion)
        assert response.status_code == 200, response.text
        token = pyjwt.decode(response.json()["access_token"], options={"verify_signature": False})
        assert token["sub"] == token["client_id"] == "svc"
    # client_id in the form is optional, and must name the signer when present.
    named = await token_with(client, es256(assertion_claims(clock)), client_id="svc")
    assert named.status_code == 200, named.text
    assert_invalid_client(await token_with(client, es256(assertion_claims(clock)), client_id="x"))


async def test_a_jti_is_single_use(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await add_jwt_client(app)
    assertion = es256(assertion_claims(clock))
    assert (await token_with(client, assertion)).status_code == 200
    assert_invalid_client(await token_with(client, assertion))
    # The same jti in a freshly signed assertion is a replay too.
    reused = assertion_claims(
        clock, jti=pyjwt.decode(assertion, options={"verify_signature": False})["jti"]
    )
    assert_invalid_client(await token_with(client, rs256_pyjwt(reused)))


@pytest.mark.parametrize(
    "overrides",
    [
        {"aud": f"{TEST_ISSUER}/token"},  # the token endpoint: not accepted (rfc7523bis)
        {"aud": [TEST_ISSUER]},  # exactly one string
        {"aud": [TEST_ISSUER, "https://other.example"]},
        {"aud": TEST_ISSUER + "/"},
        {"aud": None},
        {"exp": None},
        {"exp": "9999999999"},
        {"jti": None},
        {"jti": ""},
        {"jti": "x" * 257},
        {"sub": "other"},
        {"sub": None},
        {"iss": "other"},
    ],
    ids=lambda overrides: ",".join(f"{k}={str(v)[:30]}" for k, v in overrides.items()),
)
async def test_claims_are_checked(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock, overrides: dict[str, Any]
) -> None:
    await add_jwt_client(app)
    await add_jwt_client(app, "other")
    claims = assertion_claims(clock, **overrides)
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
    assert_invalid_client(await token_with(client, es256(claims)))


@pytest.mark.parametrize(
    ("exp", "iat", "accepted"),
    [
        (60, 0, True),
        (300, 0, True),
        (3600, 0, False),  # too long-lived: exp at most 5 minutes ahead
        (-120, -180, False),  # expired (beyond the leeway)
        (60, 3600, False),  # issued in the future
    ],
)
async def test_an_assertion_is_short_lived(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock, exp: int, iat: int, accepted: bool
) -> None:
    await add_jwt_client(app)
    now = int(clock().timestamp())
    response = await token_with(
        client, es256(assertion_claims(clock, exp=now + exp, iat=now + iat))
    )
    if accepted:
        assert response.status_code == 200, response.text
    else:
        assert_invalid_client(response)


async def test_only_the_registered_keys_and_algorithms(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await add_jwt_client(app, "svc", EC_KEY)
    stranger = ECKey.generate_key("P-256", private=True, auto_kid=True)
    assert_invalid_client(await token_with(client, es256(assertion_claims(clock), stranger)))
    # A stranger's key under the registered kid.
    assert_invalid_client(
        await token_with(client, es256(assertion_claims(clock), stranger, kid=EC_KEY.kid))
    )
    # RS256 with a key not registered for it; HS256 keyed with the public key; alg none.
    assert_invalid_client(await token_with(client, rs256_pyjwt(assertion_claims(clock))))
    header = {"alg": "HS256", "kid": EC_KEY.kid}
    mac_key = json.dumps(EC_KEY.as_dict(private=False)).encode()  # the public JWK as secret
    forged = _hs256(header, assertion_claims(clock), mac_key)
    assert_invalid_client(await token_with(client, forged))
    unsigned = pyjwt.encode(assertion_claims(clock), "", algorithm="none")  # "": no key
    assert_invalid_client(await token_with(client, unsigned))
    assert_invalid_client(await token_with(client, "not.a.jwt"))
    assert_invalid_client(await token_with(client, "x" * 9000))
    good = await token_with(client, es256(assertion_claims(clock)))
    assert good.status_code == 200, good.text


@pytest.mark.parametrize(
    ("form", "headers"),
    [
        ({"client_assertion_type": "urn:other"}, {}),
        ({"client_assertion_type": None}, {}),
        ({"client_secret": "s"}, {}),
        ({}, basic("svc", "s")),
    ],
)
async def test_one_authentication_method_and_the_right_assertion_type(
    app: FastAPI,
    client: httpx.AsyncClient,
    clock: FakeClock,
    form: dict[str, str | None],
    headers: dict[str, str],
) -> None:
    await add_jwt_client(app)
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": es256(assertion_claims(clock)),
        **form,
    }
    body = {name: value for name, value in data.items() if value is not None}
    response = await client.post("/token", data=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"


async def test_a_jwt_client_has_no_secret_and_a_secret_client_no_assertion(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await add_jwt_client(app)
    secret_client = await register_client(
        app.state.services,
        "other",
        confidential=True,
        grant_types=frozenset({"client_credentials"}),
        scopes=frozenset({"profile"}),
    )
    assert secret_client.secret is not None
    response = await client.post(
        "/token", data={"grant_type": "client_credentials"}, headers=basic("svc", "anything")
    )
    assert_invalid_client(response)
    claims = assertion_claims(clock, iss="other", sub="other")
    assert_invalid_client(await token_with(client, es256(claims)))


async def test_disabled_or_rekeyed_clients_are_refused(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await add_jwt_client(app)
    new_key = ECKey.generate_key("P-256", private=True, auto_kid=True)
    document = json.dumps({"keys": [new_key.as_dict(private=False)]})
    assert await replace_keys(app.state.services, "svc", document)
    assert_invalid_client(await token_with(client, es256(assertion_claims(clock))))
    assert (await token_with(client, es256(assertion_claims(clock), new_key))).status_code == 200
    assert await disable_client(app.state.services, "svc")
    assert_invalid_client(await token_with(client, es256(assertion_claims(clock), new_key)))


async def test_interop_authlib_private_key_jwt(app: FastAPI) -> None:
    await add_jwt_client(app)
    oauth = AsyncOAuth2Client(
        client_id="svc",
        client_secret=RSA_KEY,
        token_endpoint_auth_method="private_key_jwt",
        transport=httpx.ASGITransport(app=app),
        base_url=TEST_ISSUER,
    )
    # aud exactly the issuer, and a short lifetime (Authlib's default is an hour).
    auth = PrivateKeyJWT(
        token_endpoint=TEST_ISSUER, claims={"exp": int(time.time()) + 60}, alg="RS256"
    )
    oauth.register_client_auth_method(auth)
    async with oauth:
        token = await oauth.fetch_token(f"{TEST_ISSUER}/token", grant_type="client_credentials")
    assert token["token_type"] == "Bearer"
    assert "refresh_token" not in token

"""examples/resource_service against a real auth_service process on loopback.

Valid token → 200; logged-out token → 401 when revocation-aware; a key rotation on the
issuer → still 200 without restarting anything; a retired key → 401; a flood of unknown
kids costs the issuer at most one JWKS download per interval.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from jose import jwt

from auth_service.security.keys import generate_private_key_pem, load_signing_key
from auth_service.verify import Introspector, TokenVerifier
from examples.resource_service.app import create_app
from tests.conftest import PASSWORD
from tests.processes import Replica, migrate_schema, service_env

pytestmark = pytest.mark.slow


@dataclass
class Issuer:
    """The running auth_service process and what the tests need to talk to it."""

    url: str
    env: dict[str, str]
    client_id: str
    client_secret: str

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "auth_service", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issuer]:
    directory = tmp_path_factory.mktemp("issuer")
    env = service_env(  # the issuer: http://127.0.0.1 and the port the kernel picks
        directory,
        AUTH_KEYS_DIR=str(directory / "keys"),
        AUTH_KEY_POLL_INTERVAL_SECONDS="1",
        AUTH_JWKS_MAX_AGE_SECONDS="1",
        AUTH_HASH_POOL_SIZE="1",
    )
    setup = Issuer("", env, "resource-server", "")  # its URL once it listens
    migrate_schema(env)
    add = ("clients", "add", "resource-server", "--confidential", "--grants", "--introspection")
    added = json.loads(setup.cli(*add))
    setup.client_secret = added["client_secret"]
    process = Replica("issuer", directory / "issuer.log")
    process.start(env, cwd=directory)
    try:
        process.wait_until_healthy(time.monotonic() + 20)
        setup.url = process.url
        yield setup
    finally:
        process.stop()


async def login(issuer: Issuer, username: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=issuer.url) as http:
        await http.post("/register", json={"username": username, "password": PASSWORD})
        form = {"grant_type": "password", "username": username, "password": PASSWORD}
        response = await http.post("/token", data=form)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture
async def resource(issuer: Issuer) -> AsyncIterator[tuple[httpx.AsyncClient, TokenVerifier]]:
    verifier = TokenVerifier(issuer.url, "api", min_refetch_seconds=0.5)
    async with (
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(verifier)), base_url="http://resource"
        ) as http,
    ):
        yield http, verifier
    await verifier.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_valid_token_is_accepted_and_missing_one_is_401(
    issuer: Issuer, resource: tuple[httpx.AsyncClient, TokenVerifier]
) -> None:
    http, _ = resource
    tokens = await login(issuer, "valid-user")
    response = await http.get("/hello", headers=bearer(tokens["access_token"]))
    assert response.status_code == 200
    assert response.json()["client"] == "public"
    missing = await http.get("/hello")
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="api"'
    garbage = await http.get("/hello", headers=bearer("garbage"))
    assert garbage.status_code == 401
    assert 'error="invalid_token"' in garbage.headers["www-authenticate"]


async def test_logout_bites_only_in_revocation_aware_mode(
    issuer: Issuer, resource: tuple[httpx.AsyncClient, TokenVerifier]
) -> None:
    local_only, _ = resource
    aware_verifier = TokenVerifier(
        issuer.url,
        "api",
        introspector=Introspector(issuer.client_id, issuer.client_secret, cache_seconds=0),
    )
    transport = httpx.ASGITransport(app=create_app(aware_verifier))
    async with httpx.AsyncClient(transport=transport, base_url="http://resource") as aware:
        tokens = await login(issuer, "logout-user")
        headers = bearer(tokens["access_token"])
        assert (await aware.get("/hello", headers=headers)).status_code == 200
        async with httpx.AsyncClient(base_url=issuer.url) as http:
            assert (await http.post("/logout", headers=headers)).status_code == 204
        revoked = await aware.get("/hello", headers=headers)
        assert revoked.status_code == 401
        assert "revoked" in revoked.headers["www-authenticate"]
        # The trade-off: a purely local verifier accepts it until it expires.
        assert (await local_only.get("/hello", headers=headers)).status_code == 200
    await aware_verifier.aclose()


async def wait_for_kid(issuer: Issuer, kid: str) -> None:
    """Until the issuer signs new tokens with `kid` (it polls its key directory)."""
    for _ in range(50):
        token = (await login(issuer, f"probe-{time.monotonic_ns()}"))["access_token"]
        if jwt.get_unverified_header(token)["kid"] == kid:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"the issuer never signed with {kid}")


async def test_key_rotation_is_a_non_event_and_retirement_ends_old_tokens(
    issuer: Issuer, resource: tuple[httpx.AsyncClient, TokenVerifier]
) -> None:
    http, verifier = resource
    old = await login(issuer, "rotation-user")
    old_kid = jwt.get_unverified_header(old["access_token"])["kid"]
    assert (await http.get("/hello", headers=bearer(old["access_token"]))).status_code == 200

    issuer.cli("keys", "generate")
    new_kid = issuer.cli("keys", "rotate", "--force").split("\t")[0]
    await wait_for_kid(issuer, new_kid)
    new = await login(issuer, "rotation-user")
    assert jwt.get_unverified_header(new["access_token"])["kid"] == new_kid
    # The verifier meets an unknown kid, refetches once, and accepts it; old tokens too.
    assert (await http.get("/hello", headers=bearer(new["access_token"]))).status_code == 200
    assert (await http.get("/hello", headers=bearer(old["access_token"]))).status_code == 200

    issuer.cli("keys", "retire", f"--kid={old_kid}", "--force")
    for _ in range(50):
        if (await http.get("/hello", headers=bearer(old["access_token"]))).status_code == 401:
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("a token of a retired key kept working")
    assert (await http.get("/hello", headers=bearer(new["access_token"]))).status_code == 200
    assert verifier.fetches >= 2


async def test_a_flood_of_unknown_kids_fetches_the_jwks_at_most_once(issuer: Issuer) -> None:
    verifier = TokenVerifier(issuer.url, "api", min_refetch_seconds=60)
    tokens = await login(issuer, "flood-user")
    await verifier.verify(tokens["access_token"], scopes=["profile"])
    assert verifier.fetches == 1
    attacker = load_signing_key(generate_private_key_pem("ES256"), "ES256")
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": "api", "sub": "x", "exp": now + 60, "iat": now}
    failures = 0
    for index in range(50):
        forged = jwt.encode(
            {
                **claims,
                "nbf": now,
                "jti": str(index),
                "scope": "profile",
                "client_id": "c",
                "sid": "s",
            },
            attacker.private_key,
            algorithm="ES256",
            headers={"kid": f"bogus-{index}", "typ": "at+jwt"},
        )
        try:
            await verifier.verify(forged)
        except Exception:
            failures += 1
    assert failures == 50
    assert verifier.fetches == 1
    await verifier.aclose()

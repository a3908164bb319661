"""Two real `auth-service serve` processes sharing PostgreSQL and Redis.

What one replica revokes, the other refuses at once; a session opened on one can be
refreshed on the other, and reuse of a rotated refresh token is caught whichever replica
sees it. The processes run on free loopback ports with one signing key and one issuer, and
are stopped by their PIDs; their output is printed when a test fails.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from sqlalchemy import bindparam, text

from auth_service.db import create_engine
from auth_service.security.keys import generate_private_key_pem
from tests.conftest import PASSWORD, delete_keys
from tests.processes import Replica

pytestmark = pytest.mark.slow

ISSUER = "http://127.0.0.1"
START_TIMEOUT_SECONDS = 20.0


@dataclass
class Cluster:
    """Replicas A and B, plus what the tests created (deleted at the end)."""

    a: Replica
    b: Replica
    redis_url: str
    prefix: str
    user_ids: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def cluster(
    postgres_url: str, redis_server_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("replicas")
    key_file = directory / "signing-es256.pem"
    key_file.write_bytes(generate_private_key_pem("ES256"))
    key_file.chmod(0o600)
    prefix = f"replicatest:{secrets.token_hex(6)}:"
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUTH_")}
    env.update(
        {
            "AUTH_ENVIRONMENT": "test",
            "AUTH_HOST": "127.0.0.1",
            "AUTH_DATABASE_URL": postgres_url,
            "AUTH_REDIS_URL": redis_server_url,
            "AUTH_REDIS_KEY_PREFIX": prefix,
            "AUTH_SIGNING_KEY_FILE": str(key_file),
            "AUTH_ISSUER": ISSUER,
            "AUTH_DATA_DIR": str(directory),
            "AUTH_HASH_POOL_SIZE": "1",
            "AUTH_REFRESH_REUSE_GRACE_SECONDS": "0",
        }
    )
    created = Cluster(
        Replica("A", directory / "replica-a.log"),
        Replica("B", directory / "replica-b.log"),
        redis_server_url,
        prefix,
    )
    replicas = (created.a, created.b)
    try:
        for replica in replicas:
            replica.start(env, cwd=directory)  # cwd: no developer .env is read
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for replica in replicas:
            replica.wait_until_healthy(deadline)
        yield created
    finally:
        for replica in replicas:
            replica.stop()
        # Shutdown output; pytest shows it only when the module's last test failed.
        for replica in replicas:
            print(f"----- replica {replica.name} output -----\n{replica.output()}")
        asyncio.run(delete_keys(redis_server_url, prefix))
        asyncio.run(_delete_rows(postgres_url, created.user_ids))


async def _delete_rows(database_url: str, user_ids: list[str]) -> None:
    if not user_ids:
        return
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            sessions = "SELECT id FROM sessions WHERE user_id IN :ids"
            for statement in (
                f"DELETE FROM refresh_tokens WHERE session_id IN ({sessions})",
                "DELETE FROM sessions WHERE user_id IN :ids",
                "DELETE FROM users WHERE id IN :ids",
            ):
                await connection.execute(
                    text(statement).bindparams(bindparam("ids", expanding=True)),
                    {"ids": user_ids},
                )
    finally:
        await engine.dispose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture(autouse=True)
def _replica_output(cluster: Cluster) -> Iterator[None]:
    """Print what the replicas logged during this test (pytest shows it only on failure),
    and fail if one of them died."""
    replicas = (cluster.a, cluster.b)
    starts = [len(replica.output()) for replica in replicas]
    yield
    for replica, start in zip(replicas, starts, strict=True):
        print(f"----- replica {replica.name} output during this test -----")
        print(replica.output()[start:])
    for replica in replicas:
        assert replica.process is not None
        assert replica.process.poll() is None, f"replica {replica.name} exited"


async def new_user(http: httpx.AsyncClient, cluster: Cluster) -> str:
    username = f"replica-{secrets.token_hex(6)}"
    response = await http.post(
        f"{cluster.a.url}/register", json={"username": username, "password": PASSWORD}
    )
    assert response.status_code == 201, response.text
    cluster.user_ids.append(response.json()["id"])
    return username


async def login(http: httpx.AsyncClient, replica: Replica, username: str) -> dict[str, Any]:
    form = {"grant_type": "password", "username": username, "password": PASSWORD}
    response = await http.post(f"{replica.url}/token", data=form)
    assert response.status_code == 200, response.text
    grant: dict[str, Any] = response.json()
    return grant


async def refresh(http: httpx.AsyncClient, replica: Replica, refresh_token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    return await http.post(f"{replica.url}/token", data=form)


async def me(http: httpx.AsyncClient, replica: Replica, access_token: str) -> httpx.Response:
    return await http.get(
        f"{replica.url}/users/me", headers={"Authorization": f"Bearer {access_token}"}
    )


def assert_revoked(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


async def test_logout_on_one_replica_is_refused_at_once_by_the_other(
    http: httpx.AsyncClient, cluster: Cluster
) -> None:
    a, b = cluster.a, cluster.b
    username = await new_user(http, cluster)
    grant = await login(http, a, username)
    token = grant["access_token"]
    seen = await me(http, b, token)
    assert seen.status_code == 200, seen.text
    assert seen.json()["username"] == username

    logout = await http.post(f"{a.url}/logout", headers={"Authorization": f"Bearer {token}"})
    assert logout.status_code == 204, logout.text

    assert_revoked(await me(http, b, token))
    assert_revoked(await me(http, a, token))
    assert_invalid_grant(await refresh(http, b, grant["refresh_token"]))


async def test_refresh_across_replicas_and_reuse_detected_on_the_other(
    http: httpx.AsyncClient, cluster: Cluster
) -> None:
    a, b = cluster.a, cluster.b
    username = await new_user(http, cluster)
    opened = await login(http, a, username)

    rotated = await refresh(http, b, opened["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    newest = rotated.json()
    assert newest["refresh_token"] != opened["refresh_token"]
    assert (await me(http, a, newest["access_token"])).status_code == 200
    assert (await me(http, b, newest["access_token"])).status_code == 200

    # Grace is 0: replaying the rotated token on A is theft; the whole session dies on B.
    assert_invalid_grant(await refresh(http, a, opened["refresh_token"]))
    assert_revoked(await me(http, b, newest["access_token"]))
    assert_revoked(await me(http, b, opened["access_token"]))
    assert_invalid_grant(await refresh(http, b, newest["refresh_token"]))


async def test_revocations_survive_losing_the_shared_keyspace(
    http: httpx.AsyncClient, cluster: Cluster
) -> None:
    a, b = cluster.a, cluster.b
    username = await new_user(http, cluster)
    revoked = await login(http, a, username)
    live = await login(http, b, username)
    logout = await http.post(
        f"{b.url}/logout", headers={"Authorization": f"Bearer {revoked['access_token']}"}
    )
    assert logout.status_code == 204, logout.text
    assert_revoked(await me(http, a, revoked["access_token"]))

    # Lose every key of this deployment (the shared Redis is not ours to flush).
    await delete_keys(cluster.redis_url, cluster.prefix)

    for replica in (a, b):
        assert_revoked(await me(http, replica, revoked["access_token"]))
        assert (await me(http, replica, live["access_token"])).status_code == 200

"""docs/operations.md's backup procedure: pg_dump -> restore into a new database -> same state.

PostgreSQL holds everything that must survive (users, sessions, refresh tokens, revoked
access tokens, not-before times); Redis only mirrors the revocations for speed. So a dump
restored into a new database, served with an EMPTY Redis keyspace (as after losing Redis),
must keep the same users and refuse exactly the same tokens.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager

from auth_service.app import create_app
from auth_service.db.migrate import upgrade_to_head
from auth_service.services.accounts import disable
from tests.conftest import (
    POSTGRES_ADMIN_DSN,
    TEST_ISSUER,
    _postgres_admin,
    _service_missing,
    delete_keys,
    make_settings,
    password_grant,
    register,
)

TABLES = ("users", "sessions", "refresh_tokens", "revoked_access_tokens", "oauth_clients")
TOOL_TIMEOUT_SECONDS = 120

pytestmark = pytest.mark.skipif(
    shutil.which("pg_dump") is None or shutil.which("pg_restore") is None,
    reason="pg_dump and pg_restore (postgresql-client) are not installed",
)


def _libpq_url(name: str) -> str:
    return f"{POSTGRES_ADMIN_DSN.rsplit('/', 1)[0]}/{name}"


def _service_url(name: str) -> str:
    return _libpq_url(name).replace("postgresql://", "postgresql+asyncpg://")


@pytest.fixture
async def databases(redis_server_url: str) -> AsyncIterator[tuple[str, str]]:
    """Two empty databases of this test: the original and the restore target."""
    names = tuple(f"auth_backup_{os.getpid()}_{secrets.token_hex(4)}_{n}" for n in ("a", "b"))
    try:
        for name in names:
            await _postgres_admin(f'CREATE DATABASE "{name}"')
    except (OSError, TimeoutError) as exc:
        _service_missing("PostgreSQL", exc)
    try:
        yield names[0], names[1]
    finally:
        for name in names:
            await _postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def _serving(
    database: str, redis_url: str, prefix: str, data_dir: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, object]]:
    settings = make_settings(
        _service_url(database), data_dir, redis_url=redis_url, redis_key_prefix=prefix
    )
    app = create_app(settings)
    try:
        async with LifespanManager(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
                yield client, app.state.services
    finally:
        await delete_keys(redis_url, prefix)


async def _rows(database: str) -> dict[str, list[tuple[object, ...]]]:
    connection = await asyncpg.connect(_libpq_url(database), timeout=5)
    try:
        return {
            table: [
                tuple(row) for row in await connection.fetch(f"SELECT * FROM {table} ORDER BY 1")
            ]
            for table in TABLES
        }
    finally:
        await connection.close()


async def _status(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
    return response.status_code


def _run(*command: str) -> None:
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS, check=False
    )
    assert completed.returncode == 0, f"{command[0]}: {completed.stderr}"


async def test_pg_dump_and_restore_keep_users_and_revocations_without_redis(
    databases: tuple[str, str], redis_server_url: str, tmp_path: Path
) -> None:
    original, restored = databases
    await asyncio.to_thread(upgrade_to_head, _service_url(original))
    # Both runs share tmp_path, the data dir holding the (development) signing key.
    async with _serving(
        original, redis_server_url, f"authbk:{secrets.token_hex(4)}:", tmp_path
    ) as (
        client,
        services,
    ):
        tokens: dict[str, dict[str, str]] = {}
        for name in ("alice", "bob", "carol", "dave"):
            await register(client, name)
            tokens[name] = (await password_grant(client, name)).json()
        bearer = {"Authorization": f"Bearer {tokens['bob']['access_token']}"}
        assert (await client.post("/logout", headers=bearer)).status_code == 204  # session
        revoked = {"token": tokens["carol"]["access_token"], "token_type_hint": "access_token"}
        assert (await client.post("/revoke", data=revoked)).status_code == 200  # one jti
        assert await disable(services, "dave")  # type: ignore[arg-type]  # not-before + disabled
        before = {name: await _status(client, t["access_token"]) for name, t in tokens.items()}
    assert before == {"alice": 200, "bob": 401, "carol": 401, "dave": 401}

    # The documented procedure: a custom-format dump, restored into a new empty database.
    dump = tmp_path / "auth.dump"
    _run("pg_dump", "--format=custom", "--no-owner", f"--file={dump}", _libpq_url(original))
    _run(
        "pg_restore", "--no-owner", "--exit-on-error", f"--dbname={_libpq_url(restored)}", str(dump)
    )
    assert await _rows(restored) == await _rows(original)

    # Served from the restored database with a new, empty Redis keyspace: Redis "lost".
    async with _serving(
        restored, redis_server_url, f"authbk:{secrets.token_hex(4)}:", tmp_path
    ) as (
        client,
        _,
    ):
        after = {name: await _status(client, t["access_token"]) for name, t in tokens.items()}
        assert after == before
        refresh = {"grant_type": "refresh_token", "refresh_token": tokens["bob"]["refresh_token"]}
        assert (await client.post("/token", data=refresh)).json()["error"] == "invalid_grant"
        alive = {"grant_type": "refresh_token", "refresh_token": tokens["alice"]["refresh_token"]}
        assert (await client.post("/token", data=alive)).status_code == 200
        assert (await password_grant(client, "carol")).status_code == 200
        assert (await password_grant(client, "dave")).json()["error"] == "invalid_grant"

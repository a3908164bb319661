"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from alembic import command
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from auth_service.api.management import create_management_app
from auth_service.app import create_app
from auth_service.db.migrate import alembic_config
from tests.conftest import POSTGRES_ADMIN_DSN, TEST_ISSUER, make_settings
from tests.processes import service_env


@pytest.fixture
async def management(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_management_app(app))
    async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
        yield http


async def test_healthz_and_readyz_when_the_database_answers(
    client: httpx.AsyncClient, management: httpx.AsyncClient
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await management.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "status": "ok",
        "checks": {"database": "ok", "schema": "ok", "revocation_store": "ok"},
    }


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # Nothing listens on port 9 of loopback: the connection is refused at once.
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:9/none", tmp_path)
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=create_management_app(app))
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "schema": "unavailable", "revocation_store": "ok"},
    }


async def test_cut_postgresql_connections_cost_no_failed_request(
    postgres_url: str, tmp_path: Path
) -> None:
    """No pre-ping round trip, yet no 503: a pooled connection the server closed is seen
    closed at checkout and replaced (db/engine.py, _replace_closed)."""
    app = create_app(make_settings(postgres_url, tmp_path))
    form = {"grant_type": "password", "username": "nobody-here", "password": "x" * 20}
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            assert (await client.post("/token", data=form)).status_code == 400  # pool warm
            admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
            try:
                cut = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()",
                    postgres_url.rsplit("/", 1)[1],
                )
            finally:
                await admin.close()
            assert cut >= 1
            # Let the loop read the server's FATAL message and the close. (A statement sent
            # between the two fails as "another operation is in progress": a 503.)
            await asyncio.sleep(0.3)
            assert [(await client.post("/token", data=form)).status_code for _ in range(3)] == [
                400
            ] * 3


def _migrated_to(revision: str, tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'behind.db'}"
    if revision:
        command.upgrade(alembic_config(url), revision)
    return url


@pytest.mark.parametrize("revision", ["0002", ""])
async def test_readyz_is_503_when_the_schema_is_behind_the_code(
    revision: str, tmp_path: Path
) -> None:
    url = await asyncio.to_thread(_migrated_to, revision, tmp_path)  # alembic runs its own loop
    app = create_app(make_settings(url, tmp_path))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=create_management_app(app))
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["schema"] == "behind"


def test_serve_refuses_a_schema_behind_the_code_in_one_line(tmp_path: Path) -> None:
    url = _migrated_to("0002", tmp_path)
    env = service_env(tmp_path, AUTH_DATABASE_URL=url)
    completed = subprocess.run(
        [sys.executable, "-m", "auth_service", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode != 0
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1, completed.stderr
    assert "0002" in lines[0]
    assert "auth-service migrate" in lines[0]

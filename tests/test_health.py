"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx
from asgi_lifespan import LifespanManager

from auth_service.app import create_app
from tests.conftest import POSTGRES_ADMIN_DSN, TEST_ISSUER, make_settings


async def test_healthz_and_readyz_when_the_database_answers(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "checks": {"database": "ok", "revocation_store": "ok"}}


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    # Nothing listens on port 9 of loopback: the connection is refused at once.
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:9/none", tmp_path)
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            assert (await client.get("/healthz")).status_code == 200
            ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "revocation_store": "ok"},
    }


async def test_cut_postgresql_connections_cost_one_503_then_recover(
    postgres_url: str, tmp_path: Path
) -> None:
    """No pre-ping: a dead pooled connection fails one request (503), which resets the pool."""
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
            # between the two fails as "another operation is in progress", a 500, with or
            # without pre-ping: the ping would hit the same state.)
            await asyncio.sleep(0.3)
            failed = await client.post("/token", data=form)
            assert failed.status_code == 503
            assert "retry-after" in failed.headers
            assert [(await client.post("/token", data=form)).status_code for _ in range(3)] == [
                400
            ] * 3

"""Fixtures: every behaviour test runs on the embedded default and on the real services.

The two backends are SQLite + the in-process revocation store, and PostgreSQL + Redis.
Each gets its own database (a temp SQLite file; a PostgreSQL database created and dropped
by the suite), migrated with the shipped Alembic scripts, and its own Redis key prefix,
deleted after each test. Apps are built per test from explicit Settings; nothing is read
from the developer's environment or `.env`.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from redis import asyncio as redis_asyncio
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from auth_service.app import create_app
from auth_service.config import OWASP_MIN_MEMORY_KIB, OWASP_MIN_TIME_COST, Settings
from auth_service.db.engine import create_engine, is_sqlite
from auth_service.db.migrate import upgrade_to_head
from auth_service.security.keys import generate_private_key_pem, write_private_file

TEST_ISSUER = "http://testserver"
PASSWORD = "correct horse battery staple"
POSTGRES_ADMIN_DSN = os.environ.get(
    "AUTH_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_TEST_URL = os.environ.get("AUTH_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
IN_CI = os.environ.get("CI") == "true"


@pytest.fixture(autouse=True, scope="session")
def _isolated_environment() -> Iterator[None]:
    """Keep the developer's AUTH_* variables out of the settings under test."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("AUTH_") and "TEST" not in k}
    for key in saved:
        del os.environ[key]
    yield
    os.environ.update(saved)


def _service_missing(what: str, exc: BaseException) -> None:
    message = f"{what} is not reachable ({type(exc).__name__}: {exc})"
    if IN_CI:
        pytest.fail(f"{message}; CI=true requires it", pytrace=False)
    pytest.skip(message)


async def _postgres_admin(sql: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=5)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this test session, dropped at the end."""
    name = f"auth_service_test_{os.getpid()}_{secrets.token_hex(4)}"
    try:
        asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _service_missing("PostgreSQL", exc)
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    url = f"{base}/{name}"
    try:
        upgrade_to_head(url)
        yield url
    finally:
        asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite file for this test session."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'auth.db'}"
    upgrade_to_head(url)
    return url


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    """The local Redis; its absence skips (or, under CI=true, fails) the Redis backend."""

    async def ping() -> None:
        client = redis_asyncio.Redis.from_url(REDIS_TEST_URL, socket_connect_timeout=2)
        try:
            await client.ping()
        finally:
            await client.aclose()

    try:
        asyncio.run(ping())
    except (OSError, RedisError) as exc:
        _service_missing("Redis", exc)
    return REDIS_TEST_URL


async def delete_keys(url: str, prefix: str) -> None:
    """Remove every key under `prefix` (this test's keyspace)."""
    client = redis_asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@dataclass(frozen=True)
class Backend:
    """Where a test app keeps its state."""

    database_url: str
    redis_url: str | None
    redis_prefix: str


@pytest.fixture(params=["sqlite-memory", "postgres-redis"])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """Each behaviour test runs once per backend pair."""
    prefix = f"authtest:{secrets.token_hex(6)}:"
    if request.param == "sqlite-memory":
        yield Backend(request.getfixturevalue("sqlite_url"), None, prefix)
        return
    redis_url = request.getfixturevalue("redis_server_url")
    yield Backend(request.getfixturevalue("postgres_url"), redis_url, prefix)
    asyncio.run(delete_keys(redis_url, prefix))


@pytest.fixture
def database_url(backend: Backend) -> str:
    return backend.database_url


# Real argon2id (the same library and code path) at 1 MiB and one pass, ~0.5 ms a hash:
# about 2,000 tests register and log in, and at OWASP's floor (~21 ms) hashing was a sixth
# of the suite's CPU. Tests whose subject is the hash's parameters, memory or duration
# (stored parameters, memory bounds, requests that must overlap a hash) use FLOOR_ARGON2;
# test_config checks the default; bench/ measures it.
TEST_ARGON2 = {
    "password_hash_memory_kib": 1024,
    "password_hash_time_cost": 1,
    "password_hash_parallelism": 1,
}
FLOOR_ARGON2 = {
    "password_hash_memory_kib": OWASP_MIN_MEMORY_KIB,
    "password_hash_time_cost": OWASP_MIN_TIME_COST,
    "password_hash_parallelism": 1,
}
# For a test (or module) that needs hashing at OWASP's floor.
at_the_argon2_floor = pytest.mark.settings(**FLOOR_ARGON2)


_ID_TOKEN_KEY: list[bytes] = []


def _seed_id_token_key(data_dir: Path) -> None:
    """Give the data dir the development RS256 ID-token key, generated once per run: a
    3072-bit RSA key per test would cost every app start a second of CPU."""
    path = data_dir / "keys" / "signing-rs256.pem"
    if path.exists():
        return
    if not _ID_TOKEN_KEY:
        _ID_TOKEN_KEY.append(generate_private_key_pem("RS256"))
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.mkdir(exist_ok=True, mode=0o700)
    write_private_file(path, _ID_TOKEN_KEY[0])


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for tests: real but cheap argon2 (TEST_ARGON2), small pool, fixed issuer."""
    if overrides.get("signing_algorithm", "ES256") == "ES256":
        _seed_id_token_key(data_dir)
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "data_dir": data_dir,
        "issuer": TEST_ISSUER,
        "hash_pool_size": 2,
        **TEST_ARGON2,
        **overrides,
    }
    return Settings(_env_file=None, **values)


def settings_overrides(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The fields of the test's `@pytest.mark.settings(...)` markers, which stack: the
    test's own win over its class's and module's."""
    overrides: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("settings"))):
        overrides |= marker.kwargs
    return overrides


@pytest.fixture
def settings(backend: Backend, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Per-test settings; `@pytest.mark.settings(name=value)` overrides fields."""
    return make_settings(
        backend.database_url,
        tmp_path,
        redis_url=backend.redis_url,
        redis_key_prefix=backend.redis_prefix,
        **settings_overrides(request),
    )


class FakeClock:
    """A controllable clock: starts at the real time and moves only when told."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@asynccontextmanager
async def direct_sql(app: FastAPI) -> AsyncIterator[AsyncConnection]:
    """A transaction on a connection of the test's own to the app's database, for setting
    up and inspecting rows (the service itself reaches SQL only through its repositories)."""
    engine = create_engine(app.state.settings.effective_database_url, pool_size=1)
    try:
        async with engine.begin() as connection:
            yield connection
    finally:
        await engine.dispose()


@asynccontextmanager
async def orm_session(app: FastAPI) -> AsyncIterator[AsyncSession]:
    """Like direct_sql, as an ORM session (committed when the block ends)."""
    engine = create_engine(app.state.settings.effective_database_url, pool_size=1)
    try:
        async with async_sessionmaker(engine, expire_on_commit=False).begin() as session:
            yield session
    finally:
        await engine.dispose()


@pytest.fixture
async def app(settings: Settings, clock: FakeClock) -> AsyncIterator[FastAPI]:
    """A started app; its tables are emptied afterwards so the next test starts clean."""
    application = create_app(settings, clock=clock)
    # asgi-lifespan's 5 s default is too short for a PostgreSQL start-up or shutdown on a
    # loaded 2-core machine (a timeout, not a failure of the code under test).
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=60):
        yield application
        await empty_database(settings.effective_database_url)


# What tests create, children first: emptied after each test that shares a session database.
TEST_TABLES = (
    "authorization_codes",
    "authorization_requests",
    "consents",
    "refresh_tokens",
    "sessions",
    "browser_sessions",
    "revoked_access_tokens",
    "mfa_tokens",
    "mfa_recovery_codes",
    "mfa_totp_factors",
    "email_tokens",
    "mail_outbox",
    "users",
    "oauth_clients",
)


# One script, one round trip: children first, so PostgreSQL's foreign keys never object.
_EMPTY_TABLES = "".join(f"DELETE FROM {table};" for table in TEST_TABLES)


async def empty_database(url: str) -> None:
    """Delete every row the tests create, so the next test on this database starts clean:
    on a connection of its own (the driver's, not an engine: a fresh engine's first
    connect costs more round trips than the deletes)."""
    if is_sqlite(url):
        database = make_url(url).database
        assert database is not None
        with closing(sqlite3.connect(database, timeout=30)) as connection:
            connection.executescript(f"BEGIN;{_EMPTY_TABLES}COMMIT;")
        return
    connection = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False), timeout=30
    )
    try:
        await connection.execute(_EMPTY_TABLES)  # several statements: one implicit transaction
    finally:
        await connection.close()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
        yield http


async def register(
    client: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD
) -> dict[str, Any]:
    """Register and return the body; fails the test unless it is a 201."""
    response = await client.post("/register", json={"username": username, "password": password})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def password_grant(
    client: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD, **extra: str
) -> httpx.Response:
    """POST /token with grant_type=password."""
    form = {"grant_type": "password", "username": username, "password": password, **extra}
    return await client.post("/token", data=form)


async def access_token(client: httpx.AsyncClient, username: str = "alice") -> str:
    """Register `username` and return an access token for it."""
    await register(client, username)
    response = await password_grant(client, username)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token

"""The hot session statements at the store level, on both backends.

Rotation is one compare-and-set however it is run (one CTE on asyncpg directly on
PostgreSQL, a transaction on the SQLiteWorker's connection on SQLite); values written by
that path read back exactly as SQLAlchemy's own, and the driver's errors surface as
SQLAlchemy's.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from auth_service.db import create_engine
from auth_service.db.engine import is_sqlite
from auth_service.db.postgres import PgConnection
from auth_service.db.sqlite_worker import SQLiteWorker
from auth_service.db.statements import Statement
from auth_service.errors import DatabaseUnavailable
from auth_service.models import RefreshToken, Session, User
from auth_service.repositories import Database, RefreshTokenRow, SessionRow
from auth_service.repositories.postgres import PgDatabase
from auth_service.repositories.sqlite import SqliteDatabase
from tests.conftest import POSTGRES_ADMIN_DSN


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """The service's engine on the test database, with one user; emptied afterwards."""
    engine = create_engine(database_url)
    now = datetime.now(UTC)
    async with engine.begin() as db:
        await db.execute(
            User.__table__.insert().values(  # type: ignore[attr-defined]
                id="u-sql",
                username="Sql",
                username_canonical="sql",
                password_hash="x",
                is_active=True,
                created_at=now,
                updated_at=now,
                scopes="profile",
            )
        )
    yield engine
    async with engine.begin() as db:
        for model in (RefreshToken, Session, User):
            await db.execute(delete(model))
    await engine.dispose()


@pytest.fixture
async def factory(engine: AsyncEngine, database_url: str) -> AsyncIterator[Database]:
    """The repositories the service runs on (on SQLite, its worker thread)."""
    database: Database = (
        SqliteDatabase(database_url)
        if is_sqlite(database_url)
        else PgDatabase(create_engine(database_url))
    )
    yield database
    await database.close()


def _session(now: datetime) -> SessionRow:
    return SessionRow(
        id=secrets.token_hex(8),
        user_id="u-sql",
        client_id="c",
        scope="profile",
        created_at=now,
        last_used_at=now,
        last_ip="192.0.2.1",
        last_user_agent="ua",
        idle_expires_at=now + timedelta(hours=1),
        absolute_expires_at=now + timedelta(days=1),
    )


async def _rotate(factory: Database, old: str, new: str, sid: str, now: datetime) -> bool:
    return await factory.sessions.rotate(
        old,
        now=now,
        sealed_successor="sealed",
        successor_hash=new,
        session_id=sid,
        idle_expires_at=now + timedelta(hours=2),
        ip="198.51.100.7",
        user_agent="ua2",
    )


async def test_open_then_read_back_the_same_values(engine: AsyncEngine, factory: Database) -> None:
    now = datetime.now(UTC).replace(microsecond=123456)
    record = _session(now)
    assert await factory.sessions.open(record, token_hash="a" * 64, credential_version=0)
    found = await factory.sessions.find_family("a" * 64)
    async with engine.connect() as db:
        stored = (await db.execute(select(Session).where(Session.id == record.id))).one()
    assert found is not None
    assert found.session == record
    assert found.token == RefreshTokenRow("a" * 64, record.id, now, None, None)
    assert (found.username, found.user_active, found.user_scopes) == ("Sql", True, "profile")
    assert found.user_active is True
    assert stored.created_at == now
    assert stored.created_at.tzinfo is not None
    async with factory.transaction() as tx:  # the same row inside a transaction
        assert await tx.sessions.find_family("a" * 64) == found


async def test_rotation_has_exactly_one_winner(engine: AsyncEngine, factory: Database) -> None:
    now = datetime.now(UTC)
    record = _session(now)
    assert await factory.sessions.open(record, token_hash="b" * 64, credential_version=0)
    later = now + timedelta(seconds=5)
    outcomes = await asyncio.gather(
        *(_rotate(factory, "b" * 64, f"{i:064x}", record.id, later) for i in range(8))
    )
    assert outcomes.count(True) == 1
    async with engine.connect() as db:
        tokens = (
            await db.execute(select(RefreshToken).where(RefreshToken.session_id == record.id))
        ).all()
        session = (await db.execute(select(Session).where(Session.id == record.id))).one()
    assert len(tokens) == 2
    spent = next(t for t in tokens if t.token_hash == "b" * 64)
    assert (spent.used_at, spent.sealed_successor) == (later, "sealed")
    assert (session.last_used_at, session.last_ip, session.last_user_agent) == (
        later,
        "198.51.100.7",
        "ua2",
    )
    assert session.idle_expires_at == later + timedelta(hours=2)
    assert not await _rotate(factory, "b" * 64, "f" * 64, record.id, later)


async def test_a_failed_rotation_leaves_the_token_unspent(
    engine: AsyncEngine, factory: Database
) -> None:
    """The claim, the successor and the session's use commit together or not at all."""
    now = datetime.now(UTC)
    first, second = _session(now), _session(now)
    async with factory.transaction() as tx:
        assert await tx.sessions.open(first, token_hash="d" * 64, credential_version=0)
        assert await tx.sessions.open(second, token_hash="e" * 64, credential_version=0)
    with pytest.raises(IntegrityError):  # the successor's hash is taken
        await _rotate(factory, "d" * 64, "e" * 64, first.id, now + timedelta(seconds=1))
    found = await factory.sessions.find_family("d" * 64)
    assert found is not None
    assert (found.token.used_at, found.token.sealed_successor) == (None, None)
    assert found.session == first
    assert await _rotate(factory, "d" * 64, "f" * 64, first.id, now + timedelta(seconds=2))


async def test_a_session_opens_only_at_the_current_credential_version(
    engine: AsyncEngine, factory: Database
) -> None:
    """A stale version (password changed) or a disabled user: nothing is written."""
    now = datetime.now(UTC)
    sessions = factory.sessions
    assert not await sessions.open(_session(now), token_hash="1" * 64, credential_version=1)
    async with factory.transaction() as tx:
        assert await tx.users.disable("u-sql", now=now) == 1
    assert not await sessions.open(_session(now), token_hash="2" * 64, credential_version=1)
    async with engine.connect() as db:
        assert (await db.execute(select(Session))).all() == []
        assert (await db.execute(select(RefreshToken))).all() == []


async def test_a_login_waits_for_a_password_change_in_progress_and_loses(
    engine: AsyncEngine, factory: Database
) -> None:
    """The session INSERT cannot slip in while a password change holds the user's row
    uncommitted (and then list the sessions to revoke without it)."""
    now = datetime.now(UTC)
    async with factory.transaction() as tx:
        changed = await tx.users.change_password_hash(
            "u-sql", expected_version=0, new_hash="y", now=now
        )
        assert changed == 1

        async def login() -> bool:  # another request, in another task
            return await factory.sessions.open(
                _session(now), token_hash="3" * 64, credential_version=0
            )

        opening = asyncio.ensure_future(login())
        await asyncio.sleep(0.2)  # the INSERT runs (or waits) while the change is open
        assert not opening.done()
    assert await opening is False
    async with engine.connect() as db:
        assert (await db.execute(select(Session))).all() == []


async def test_unknown_token_and_user(factory: Database) -> None:
    assert await factory.sessions.find_family("0" * 64) is None
    assert await factory.users.by_username("nobody") is None
    user = await factory.users.by_username("sql")
    assert user is not None
    assert (user.id, user.is_active) == ("u-sql", True)


async def test_sqlite_statement_errors_are_sqlalchemy_errors(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    worker = SQLiteWorker(engine.url.database or "", engine.dialect)
    now = datetime.now(UTC)
    insert_token = Statement(
        RefreshToken.__table__.insert(),  # type: ignore[attr-defined]
        ["token_hash", "session_id", "issued_at"],
    )
    try:
        with pytest.raises(IntegrityError):  # no such session: the foreign key refuses
            await worker.rows(
                insert_token, {"token_hash": "c" * 64, "session_id": "none", "issued_at": now}
            )
        with pytest.raises(OperationalError):
            await worker.rows(Statement(select(func.no_such_function())), {})
        async with engine.connect() as db:
            assert (await db.execute(select(RefreshToken))).all() == []
    finally:
        await worker.close()
        await engine.dispose()


async def test_pg_statement_on_a_cut_connection_is_a_database_error(postgres_url: str) -> None:
    """As on the ORM paths: DatabaseUnavailable (503), the pool invalidated, then recovery."""
    engine = create_engine(postgres_url)
    lookup = Statement(select(User.id).where(User.id == "nobody"))
    try:
        async with PgConnection(engine) as db:
            pid = db.driver.get_server_pid()
            admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
            try:
                await admin.execute("SELECT pg_terminate_backend($1, 5000)", pid)
            finally:
                await admin.close()
            await asyncio.sleep(0.3)  # the driver reads the FATAL message and the close
            with pytest.raises(DatabaseUnavailable):
                await db.rows(lookup, {})
        async with PgConnection(engine) as db:
            assert db.driver.get_server_pid() != pid
            assert await db.rows(lookup, {}) == []
    finally:
        await engine.dispose()


async def test_pg_statement_errors_are_sqlalchemy_errors(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    insert_token = Statement(
        RefreshToken.__table__.insert(),  # type: ignore[attr-defined]
        ["token_hash", "session_id", "issued_at"],
    )
    now = datetime.now(UTC)
    try:
        async with PgConnection(engine) as db:
            with pytest.raises(IntegrityError):  # no such session: the foreign key refuses
                await db.rows(
                    insert_token, {"token_hash": "c" * 64, "session_id": "none", "issued_at": now}
                )
            with pytest.raises(DBAPIError):
                await db.rows(Statement(select(func.no_such_function())), {})
            assert await db.rows(Statement(select(func.count()).select_from(User)), {})
    finally:
        await engine.dispose()


async def test_pg_statement_cancelled_midway_retires_its_connection(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=1)
    sleep = Statement(select(func.pg_sleep(5)))
    try:
        async with PgConnection(engine) as db:
            pid = db.driver.get_server_pid()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await db.rows(sleep, {})
        async with PgConnection(engine) as db:
            assert db.driver.get_server_pid() != pid
            assert await db.rows(Statement(select(func.count()).select_from(User)), {})
    finally:
        await engine.dispose()

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
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from auth_service.db import create_engine, create_session_factory
from auth_service.db.engine import SessionFactory
from auth_service.db.hot import PgConnection, PgStatement, hot_connection
from auth_service.db.statements import Statement
from auth_service.models import RefreshToken, Session, User
from auth_service.stores import sessions as rows
from auth_service.stores import users
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
async def factory(engine: AsyncEngine) -> AsyncIterator[SessionFactory]:
    """The session factory the hot paths take (on SQLite, with its worker thread)."""
    factory = create_session_factory(engine)
    yield factory
    await factory.aclose()


def _session(now: datetime) -> rows.SessionRow:
    return rows.SessionRow(
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


async def _rotate(factory: SessionFactory, old: str, new: str, sid: str, now: datetime) -> bool:
    async with hot_connection(factory) as db:
        won = await rows.rotate_refresh_token(
            db,
            old,
            now=now,
            sealed_successor="sealed",
            successor_hash=new,
            session_id=sid,
            idle_expires_at=now + timedelta(hours=2),
            ip="198.51.100.7",
            user_agent="ua2",
        )
        await db.commit()
    return won


async def test_open_then_read_back_the_same_values(
    engine: AsyncEngine, factory: SessionFactory
) -> None:
    now = datetime.now(UTC).replace(microsecond=123456)
    record = _session(now)
    async with hot_connection(factory) as db:
        assert await rows.open_session(db, record, token_hash="a" * 64, credential_version=0)
        await db.commit()
    async with engine.connect() as db:
        found = await rows.find_refresh_family(db, "a" * 64)
        stored = (await db.execute(select(Session).where(Session.id == record.id))).one()
    assert found is not None
    assert found.session == record
    assert found.token == rows.RefreshTokenRow("a" * 64, record.id, now, None, None)
    assert (found.username, found.user_active, found.user_scopes) == ("Sql", True, "profile")
    assert found.user_active is True
    assert stored.created_at == now
    assert stored.created_at.tzinfo is not None
    async with hot_connection(factory) as db:
        assert await rows.find_refresh_family(db, "a" * 64) == found


async def test_rotation_has_exactly_one_winner(
    engine: AsyncEngine, factory: SessionFactory
) -> None:
    now = datetime.now(UTC)
    record = _session(now)
    async with hot_connection(factory) as db:
        assert await rows.open_session(db, record, token_hash="b" * 64, credential_version=0)
        await db.commit()
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
    engine: AsyncEngine, factory: SessionFactory
) -> None:
    """The claim, the successor and the session's use commit together or not at all."""
    now = datetime.now(UTC)
    first, second = _session(now), _session(now)
    async with hot_connection(factory) as db:
        assert await rows.open_session(db, first, token_hash="d" * 64, credential_version=0)
        assert await rows.open_session(db, second, token_hash="e" * 64, credential_version=0)
        await db.commit()
    with pytest.raises(IntegrityError):  # the successor's hash is taken
        await _rotate(factory, "d" * 64, "e" * 64, first.id, now + timedelta(seconds=1))
    async with engine.connect() as db:
        found = await rows.find_refresh_family(db, "d" * 64)
    assert found is not None
    assert (found.token.used_at, found.token.sealed_successor) == (None, None)
    assert found.session == first
    assert await _rotate(factory, "d" * 64, "f" * 64, first.id, now + timedelta(seconds=2))


async def test_a_session_opens_only_at_the_current_credential_version(
    engine: AsyncEngine, factory: SessionFactory
) -> None:
    """A stale version (password changed) or a disabled user: nothing is written."""
    now = datetime.now(UTC)
    async with hot_connection(factory) as db:
        assert not await rows.open_session(
            db, _session(now), token_hash="1" * 64, credential_version=1
        )
    async with factory.begin() as db:
        assert await users.disable_user(db, "u-sql", now=now) == 1
    async with hot_connection(factory) as db:
        assert not await rows.open_session(
            db, _session(now), token_hash="2" * 64, credential_version=1
        )
    async with engine.connect() as db:
        assert (await db.execute(select(Session))).all() == []
        assert (await db.execute(select(RefreshToken))).all() == []


async def test_a_login_waits_for_a_password_change_in_progress_and_loses(
    engine: AsyncEngine, factory: SessionFactory
) -> None:
    """The session INSERT cannot slip in while a password change holds the user's row
    uncommitted (and then list the sessions to revoke without it)."""
    now = datetime.now(UTC)
    async with factory.begin() as db:
        assert (
            await users.change_password_hash(db, "u-sql", expected_version=0, new_hash="y", now=now)
            == 1
        )

        async def login() -> bool:
            async with hot_connection(factory) as hot:
                return await rows.open_session(
                    hot, _session(now), token_hash="3" * 64, credential_version=0
                )

        opening = asyncio.ensure_future(login())
        await asyncio.sleep(0.2)  # the INSERT runs (or waits) while the change is open
        assert not opening.done()
    assert await opening is False
    async with engine.connect() as db:
        assert (await db.execute(select(Session))).all() == []


async def test_unknown_token_and_user(factory: SessionFactory) -> None:
    async with hot_connection(factory) as db:
        assert await rows.find_refresh_family(db, "0" * 64) is None
        assert await users.get_user_by_username(db, "nobody") is None
        user = await users.get_user_by_username(db, "sql")
    assert user is not None
    assert (user.id, user.is_active) == ("u-sql", True)


async def test_sqlite_statement_errors_are_sqlalchemy_errors(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    factory = create_session_factory(engine)
    worker = factory.sqlite_worker
    assert worker is not None
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
        await factory.aclose()
        await engine.dispose()


async def test_pg_statement_on_a_cut_connection_is_a_database_error(postgres_url: str) -> None:
    """As from SQLAlchemy itself: a 503-class error, the pool invalidated, then recovery."""
    engine = create_engine(postgres_url)
    lookup = PgStatement(select(User.id).where(User.id == "nobody"))
    try:
        async with PgConnection(engine) as db:
            pid = db.driver.get_server_pid()
            admin = await asyncpg.connect(POSTGRES_ADMIN_DSN)
            try:
                await admin.execute("SELECT pg_terminate_backend($1, 5000)", pid)
            finally:
                await admin.close()
            await asyncio.sleep(0.3)  # the driver reads the FATAL message and the close
            with pytest.raises((OperationalError, InterfaceError)) as raised:
                await lookup.rows(db, {})
            assert raised.value.connection_invalidated
        async with PgConnection(engine) as db:
            assert db.driver.get_server_pid() != pid
            assert await lookup.rows(db, {}) == []
    finally:
        await engine.dispose()


async def test_pg_statement_errors_are_sqlalchemy_errors(postgres_url: str) -> None:
    engine = create_engine(postgres_url)
    insert_token = PgStatement(
        RefreshToken.__table__.insert(),  # type: ignore[attr-defined]
        ["token_hash", "session_id", "issued_at"],
    )
    now = datetime.now(UTC)
    try:
        async with PgConnection(engine) as db:
            with pytest.raises(IntegrityError):  # no such session: the foreign key refuses
                await insert_token.rows(
                    db, {"token_hash": "c" * 64, "session_id": "none", "issued_at": now}
                )
            with pytest.raises(DBAPIError):
                await PgStatement(select(func.no_such_function())).rows(db, {})
            assert await PgStatement(select(func.count()).select_from(User)).rows(db, {})
    finally:
        await engine.dispose()


async def test_pg_statement_cancelled_midway_retires_its_connection(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=1)
    sleep = PgStatement(select(func.pg_sleep(5)))
    try:
        async with PgConnection(engine) as db:
            pid = db.driver.get_server_pid()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await sleep.rows(db, {})
        async with PgConnection(engine) as db:
            assert db.driver.get_server_pid() != pid
            assert await PgStatement(select(func.count()).select_from(User)).rows(db, {})
    finally:
        await engine.dispose()

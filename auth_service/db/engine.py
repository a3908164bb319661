"""Build the async engine and session factory for a database URL."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

__all__ = [
    "POOL_RECYCLE_SECONDS",
    "SessionFactory",
    "core_engine",
    "create_engine",
    "create_session_factory",
    "is_sqlite",
]

# PostgreSQL connections older than this are replaced at their next checkout.
POOL_RECYCLE_SECONDS = 1800


def is_sqlite(url: str) -> bool:
    """True for the embedded SQLite backend."""
    return url.startswith("sqlite")


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed during a write; busy_timeout waits for the writer instead
    # of failing at once; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _level(name: str) -> int:
    return logging.getLogger(name).level


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An AsyncEngine for PostgreSQL (asyncpg) or SQLite (aiosqlite)."""
    # hide_parameters: SQL logging and error messages never show bound values (hashes).
    if is_sqlite(url):
        # aiosqlite logs every call with its arguments at DEBUG: never let those through.
        logging.getLogger("aiosqlite").setLevel(max(logging.INFO, _level("aiosqlite")))
        # A few connections suffice: SQLite has one writer, and each connection is a thread.
        engine = _create_async_engine(url, hide_parameters=True, pool_size=4, max_overflow=0)
        event.listen(engine.sync_engine, "connect", _tune_sqlite)
        return engine
    # No pool_pre_ping (a round trip per checkout): a connection broken meanwhile fails its
    # statement with a disconnect error, SQLAlchemy then invalidates the whole pool and the
    # request answers 503 (api/errors.py); recycling retires connections that idle timeouts
    # or failovers may have cut.
    return _create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=POOL_RECYCLE_SECONDS,
        hide_parameters=True,
    )


class SessionFactory(async_sessionmaker[AsyncSession]):
    """ORM sessions, plus `core`: the engine the hot paths run Core statements on.

    On PostgreSQL `core` is in autocommit: each hot statement is atomic on its own (writes
    are single data-modifying statements), so none pays BEGIN/COMMIT round trips. SQLite
    begins a transaction only at the first write, so there it is the engine itself.
    """

    core: AsyncEngine

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, expire_on_commit=False)
        self.core = (
            engine
            if engine.dialect.name == "sqlite"
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions that keep loaded attributes after commit (services return plain values)."""
    return SessionFactory(engine)


def core_engine(factory: async_sessionmaker[AsyncSession]) -> AsyncEngine:
    """The engine for hot Core statements behind `factory` (see SessionFactory)."""
    if isinstance(factory, SessionFactory):
        return factory.core
    bind = factory.kw["bind"]
    assert isinstance(bind, AsyncEngine)
    return bind

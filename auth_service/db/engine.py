"""Build the async engine and session factory for a database URL."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from auth_service.db.sqlite_worker import SQLiteWorker, tune_sqlite

__all__ = [
    "POOL_RECYCLE_SECONDS",
    "SessionFactory",
    "create_engine",
    "create_session_factory",
    "is_sqlite",
    "prepare_sqlite_file",
    "probe_database",
]

# PostgreSQL connections older than this are replaced at their next checkout.
POOL_RECYCLE_SECONDS = 1800


def is_sqlite(url: str) -> bool:
    """True for the embedded SQLite backend."""
    return url.startswith("sqlite")


def prepare_sqlite_file(url: str) -> None:
    """Create the SQLite file (0600) and its directory (0700) before SQLite would.

    SQLite creates a missing file with the umask's mode (usually 0644, world-readable
    password hashes); its -wal and -shm files copy the database file's mode.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    os.close(fd)


async def probe_database(url: str, *, timeout_seconds: float) -> None:
    """Open one connection and run `SELECT 1`; raises what the driver raised, or TimeoutError."""
    engine = create_engine(url, pool_size=1)
    try:
        async with asyncio.timeout(timeout_seconds), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def _level(name: str) -> int:
    return logging.getLogger(name).level


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An AsyncEngine for PostgreSQL (asyncpg) or SQLite (aiosqlite)."""
    # hide_parameters: SQL logging and error messages never show bound values (hashes).
    if is_sqlite(url):
        prepare_sqlite_file(url)
        # aiosqlite logs every call with its arguments at DEBUG: never let those through.
        logging.getLogger("aiosqlite").setLevel(max(logging.INFO, _level("aiosqlite")))
        # A few connections suffice: SQLite has one writer, and each connection is a thread.
        engine = _create_async_engine(url, hide_parameters=True, pool_size=4, max_overflow=0)
        event.listen(engine.sync_engine, "connect", tune_sqlite)
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
    """ORM sessions, plus what the hot paths run on (db/hot.py).

    PostgreSQL: `core`, the engine in autocommit, since each hot statement is atomic on
    its own (writes are single data-modifying statements) and none should pay BEGIN/COMMIT
    round trips. SQLite: `sqlite_worker`, the hot paths' own connection and thread, which
    aclose() stops.
    """

    core: AsyncEngine
    sqlite_worker: SQLiteWorker | None

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine, expire_on_commit=False)
        if engine.dialect.name == "sqlite":
            self.core = engine
            self.sqlite_worker = SQLiteWorker(engine.url.database or "", engine.dialect)
        else:
            self.core = engine.execution_options(isolation_level="AUTOCOMMIT")
            self.sqlite_worker = None

    async def aclose(self) -> None:
        """Stop the SQLite worker, if any (the engine is disposed of separately)."""
        if self.sqlite_worker is not None:
            await self.sqlite_worker.close()


def create_session_factory(engine: AsyncEngine) -> SessionFactory:
    """Sessions that keep loaded attributes after commit (services return plain values)."""
    return SessionFactory(engine)

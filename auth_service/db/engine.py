"""Build the async engine for a database URL (PostgreSQL runtime, probes, tests)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection

from auth_service.db.sqlite_worker import tune_sqlite
from auth_service.db.unavailable import translate_connection_loss

__all__ = [
    "POOL_RECYCLE_SECONDS",
    "create_engine",
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
    # No pool_pre_ping (a round trip per checkout): a connection the server closed while
    # it idled (a restart, pg_terminate_backend) is seen closed by asyncpg already and is
    # replaced at checkout (_replace_closed); one broken silently fails its statement,
    # SQLAlchemy then invalidates the whole pool and the request answers 503
    # (db/unavailable.py); recycling retires connections that idle timeouts or failovers
    # may have cut.
    engine = _create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=POOL_RECYCLE_SECONDS,
        hide_parameters=True,
    )
    translate_connection_loss(engine)
    event.listen(engine.sync_engine, "checkout", _replace_closed)
    return engine


def _replace_closed(
    dbapi_connection: Any, record: ConnectionPoolEntry, proxy: PoolProxiedConnection
) -> None:
    """Refuse a pooled connection the server already closed: the pool discards it and
    checks out (or opens) another, so the first request after a PostgreSQL restart does
    not fail. asyncpg reads the server's goodbye while the connection idles; no round trip."""
    driver = proxy.driver_connection
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this pooled connection")

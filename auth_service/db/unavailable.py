"""Connection loss is DatabaseUnavailable (503 + Retry-After), whatever path hit it.

A terminated backend, a failover or a restart surfaces from asyncpg in several shapes:
AdminShutdownError and "connection was closed in the middle of operation" (which
SQLAlchemy raises as a bare DBAPIError), "another operation is in progress" on a
connection whose previous statement was cut (InternalClientError), InterfaceError, OSError.
Each is recognised here once, the connection is invalidated (SQLAlchemy then replaces the
pool, whose other connections likely went the same way), and the error raised is the
domain's DatabaseUnavailable instead of whatever the catch-all would have made a 500.
A checkout that found the pool exhausted for its whole timeout is DatabaseUnavailable too,
and so is a SQLite file that is locked, unreadable or full (`sqlite_unavailable`). This
is the only translation: api/errors.py knows domain errors only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # no stubs or py.typed
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from auth_service.errors import DatabaseUnavailable

__all__ = [
    "is_connection_loss",
    "sqlite_unavailable",
    "translate_connection_loss",
    "unavailable_on_loss",
]

# Not every OperatorInterventionError: a cancelled query (57014) is the caller's doing.
_LOSS = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, "connection does not exist" too
    asyncpg.exceptions.AdminShutdownError,  # 57P01, pg_terminate_backend, smart shutdown
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.CannotConnectNowError,  # 57P03, starting up or in recovery
    asyncpg.exceptions.TooManyConnectionsError,  # 53300
    asyncpg.InterfaceError,  # "connection is closed"
    asyncpg.InternalClientError,  # "another operation is in progress" after a cut
    OSError,  # refused, reset, unreachable; TimeoutError too
)


def is_connection_loss(error: BaseException) -> bool:
    """True if `error`, or any error it was raised from, means the database is out of reach."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _LOSS):
            return True
        orig = getattr(current, "orig", None)  # SQLAlchemy's wrapper of the driver error
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


@asynccontextmanager
async def unavailable_on_loss() -> AsyncIterator[None]:
    """Raise a connection loss or an exhausted pool met inside the block as
    DatabaseUnavailable (from the original): for paths the engine's event does not see
    (the pool's own checkout, a connect refused before any DBAPI connection exists)."""
    try:
        yield
    except PoolTimeout as error:
        raise DatabaseUnavailable() from error
    except Exception as error:
        if is_connection_loss(error):
            raise DatabaseUnavailable() from error
        raise


# SQLite's primary result codes meaning the file cannot be used now, not a faulty statement.
_SQLITE_UNAVAILABLE = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_FULL,
    }
)


def sqlite_unavailable(error: sqlite3.Error) -> bool:
    """True if `error` means the SQLite file is locked, unreadable or full (retry later)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _SQLITE_UNAVAILABLE  # extended → primary


def _translate(context: ExceptionContext) -> BaseException | None:
    if not (context.is_disconnect or is_connection_loss(context.original_exception)):
        return None
    context.is_disconnect = True  # invalidate the connection (and the pool) at once
    return DatabaseUnavailable()


def translate_connection_loss(engine: AsyncEngine) -> None:
    """Make every connection loss on `engine` raise DatabaseUnavailable."""
    event.listen(engine.sync_engine, "handle_error", _translate)

"""Hot-path statements: compiled once by SQLAlchemy, run by the database driver itself.

The token grants' few statements skip SQLAlchemy's per-execute layers (a third or more of
a refresh's event-loop time). On PostgreSQL each is one asyncpg round trip on a connection
from the engine's pool, with driver errors raised as SQLAlchemy's and a lost connection as
DatabaseUnavailable, so pool invalidation and the 503 work as for any other statement.
On SQLite they go to the session factory's SQLiteWorker (db/sqlite_worker.py), which
commits concurrent writes together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # no stubs or py.typed
from sqlalchemy import Dialect, Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util.concurrency import greenlet_spawn

from auth_service.db.engine import SessionFactory
from auth_service.db.sqlite_worker import SQLiteWorker
from auth_service.db.statements import Statement
from auth_service.db.unavailable import is_connection_loss
from auth_service.errors import DatabaseUnavailable

__all__ = ["HotConnection", "HotLookup", "PgConnection", "PgStatement", "hot_connection"]


def hot_connection(factory: SessionFactory) -> PgConnection | SQLiteWorker:
    """Where the hot statements run: asyncpg itself on PostgreSQL, the factory's
    SQLiteWorker on SQLite."""
    if factory.sqlite_worker is not None:
        return factory.sqlite_worker
    return PgConnection(factory.core)


class PgConnection:
    """A connection from the engine's pool, used through asyncpg itself (hot paths).

    Checkout and checkin are the pool's own, so its size, recycling and invalidation apply
    as to any SQLAlchemy connection; statements skip SQLAlchemy's execution layers. There is
    no transaction: each statement commits on its own (asyncpg's autocommit).
    """

    __slots__ = ("_connection", "_engine", "driver")

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: PoolProxiedConnection | None = None
        self.driver: Any = None  # the asyncpg.Connection while checked out

    @property
    def dialect(self) -> Dialect:
        """The engine's dialect (compiles the statements)."""
        return self._engine.dialect

    async def __aenter__(self) -> PgConnection:
        # A checkout may open a connection, which awaits: SQLAlchemy needs a greenlet.
        # The pool's own checkout bypasses the engine's handle_error event, so a refusal
        # (starting up, shutting down, too many clients, connection refused) is translated
        # here, as db/unavailable.py does for the engine's connections.
        try:
            connection = await greenlet_spawn(self._engine.sync_engine.pool.connect)
        except Exception as error:
            if is_connection_loss(error):
                raise DatabaseUnavailable() from error
            raise
        self._connection = connection
        self.driver = connection.driver_connection
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection, self._connection, self.driver = self._connection, None, None
        if connection is not None:
            # A checkin may close a connection (pool full, invalidated): a greenlet again.
            await greenlet_spawn(connection.close)

    async def commit(self) -> None:
        """Nothing to do: every statement committed when it ran."""

    async def failed(self, sql: str, args: Sequence[Any], error: BaseException) -> BaseException:
        """A driver error as SQLAlchemy would raise it; a lost connection invalidates the
        pool (the others likely went with it) and is DatabaseUnavailable, as on the ORM
        paths (db/unavailable.py)."""
        connection, driver = self._connection, self.driver
        assert connection is not None
        assert driver is not None
        if not isinstance(error, Exception):
            # Cancelled mid-statement: the connection's state is unknown, retire it.
            connection.invalidate(error, soft=True)
            return error
        if driver.is_closed() or is_connection_loss(error):
            pool = self._engine.sync_engine.pool
            await greenlet_spawn(pool._invalidate, connection, error)
            return DatabaseUnavailable()
        dbapi = self._engine.dialect.loaded_dbapi
        translated = _pg_translated(dbapi, error)
        if translated is None:
            return error
        return DBAPIError.instance(
            sql,
            tuple(args),
            translated,
            dbapi.Error,
            hide_parameters=True,
            dialect=self._engine.dialect,
        )


class PgStatement(Statement):
    """A Core statement run by asyncpg itself on a PgConnection (hot paths).

    The SQL and the bind and result processing are SQLAlchemy's, compiled once; asyncpg
    prepares it once per connection (its statement cache), so a call is one round trip.
    Driver errors are raised as SQLAlchemy's, as from a statement SQLAlchemy ran; a lost
    connection as DatabaseUnavailable (503).
    """

    async def rows(self, db: PgConnection, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute with `params` (autocommitted); the rows it returns."""
        compiled = self.compiled(db.dialect)
        args = compiled.arguments(params)
        driver = db.driver
        assert driver is not None, "PgConnection used outside `async with`"
        try:
            rows = await driver.fetch(compiled.sql, *args)
        except BaseException as error:
            wrapped = await db.failed(compiled.sql, args, error)
            if wrapped is error:
                raise
            raise wrapped from error
        return compiled.processed(rows)


def _pg_translated(dbapi: Any, error: Exception) -> Exception | None:
    """asyncpg's error (not a connection loss) as the SQLAlchemy adapter's DBAPI error,
    None if it is no driver error."""
    if isinstance(error, asyncpg.InterfaceError):
        kind = dbapi.InterfaceError
    elif isinstance(error, asyncpg.IntegrityConstraintViolationError):
        kind = dbapi.IntegrityError
    elif isinstance(error, asyncpg.PostgresError):
        kind = dbapi.Error
    else:
        return None
    return kind(str(error.args[0]) if error.args else type(error).__name__, error)  # type: ignore[no-any-return]


# What the hot statements run on: hot_connection() returns one of the first two.
HotConnection = PgConnection | SQLiteWorker


class HotLookup:
    """A SELECT of at most one row, run by whatever holds it: asyncpg on a PgConnection,
    the SQLiteWorker, SQLAlchemy on anything else (ORM sessions, Core connections)."""

    def __init__(self, statement: Select[Any]) -> None:
        self._statement = statement
        self._compiled = Statement(statement)
        self._pg = PgStatement(statement)

    async def first(
        self, db: HotConnection | AsyncConnection | AsyncSession, params: Mapping[str, Any]
    ) -> Sequence[Any] | None:
        """The first row for `params`, or None."""
        if isinstance(db, PgConnection):
            rows = await self._pg.rows(db, params)
        elif isinstance(db, SQLiteWorker):
            rows = await db.rows(self._compiled, params)
        else:
            found: Sequence[Any] | None = (await db.execute(self._statement, params)).one_or_none()
            return found
        return rows[0] if rows else None

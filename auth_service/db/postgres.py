"""PostgreSQL statements run by asyncpg itself, on connections from SQLAlchemy's pool.

Every repository statement skips SQLAlchemy's per-execute layers (a third or more of a
refresh's event-loop time): it is compiled once (db/statements.py) and is one asyncpg round
trip, prepared once per connection by asyncpg's statement cache. PgRunner runs each
statement on its own, autocommitted (the hot writes are single data-modifying statements);
PgTransaction holds one connection between BEGIN and COMMIT. Driver errors are raised as
SQLAlchemy's; a lost connection invalidates the pool and is DatabaseUnavailable (503).

Checkout and checkin run in a greenlet and a lost connection retires the whole pool
through db/sqlalchemy_internals.py (the one adapter touching SQLAlchemy internals);
tests/test_sessions_sql.py covers cut connections, cancelled statements and error types.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import asyncpg  # no stubs or py.typed
from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import PoolProxiedConnection

from auth_service.db.runner import SqlSpan
from auth_service.db.sqlalchemy_internals import in_greenlet, invalidate_pool
from auth_service.db.statements import Statement
from auth_service.db.unavailable import is_connection_loss, unavailable_on_loss
from auth_service.errors import DatabaseUnavailable

__all__ = ["PgConnection", "PgRunner", "PgTransaction"]


class PgConnection:
    """A connection from the engine's pool, used through asyncpg itself.

    Checkout and checkin are the pool's own, so its size, recycling and invalidation apply
    as to any SQLAlchemy connection. Without a transaction each statement commits on its
    own (asyncpg's autocommit).
    """

    __slots__ = ("_connection", "_engine", "_span", "driver")

    def __init__(self, engine: AsyncEngine, *, span: SqlSpan | None = None) -> None:
        self._engine = engine
        self._span = span
        self._connection: PoolProxiedConnection | None = None
        self.driver: Any = None  # the asyncpg.Connection while checked out

    @property
    def dialect(self) -> Dialect:
        """The engine's dialect (compiles the statements)."""
        return self._engine.dialect

    async def __aenter__(self) -> PgConnection:
        # A checkout may open a connection, which awaits: SQLAlchemy needs a greenlet.
        # The pool's own checkout bypasses the engine's handle_error event, so a refusal
        # (starting up, shutting down, too many clients, connection refused) or an exhausted
        # pool is translated here, as db/unavailable.py does for the engine's connections.
        async with unavailable_on_loss():
            connection = await in_greenlet(self._engine.sync_engine.pool.connect)
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
            await in_greenlet(connection.close)

    async def rows(self, statement: Statement, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute one statement with `params`; the rows it returns, processed."""
        compiled = statement.compiled(self.dialect)
        args = compiled.arguments(params)
        driver = self.driver
        assert driver is not None, "PgConnection used outside `async with`"
        try:
            if self._span is None:
                rows = await driver.fetch(compiled.sql, *args)
            else:
                with self._span(compiled.sql):
                    rows = await driver.fetch(compiled.sql, *args)
        except BaseException as error:
            wrapped = await self.failed(compiled.sql, args, error)
            if wrapped is error:
                raise
            raise wrapped from error
        return compiled.processed(rows)

    async def execute(self, sql: str) -> None:
        """Run a statement without parameters or rows (BEGIN, COMMIT, ROLLBACK)."""
        try:
            await self.driver.execute(sql)
        except BaseException as error:
            wrapped = await self.failed(sql, (), error)
            if wrapped is error:
                raise
            raise wrapped from error

    def discard(self) -> None:
        """Retire this connection: the pool closes it at checkin."""
        if self._connection is not None:
            self._connection.invalidate()

    async def failed(self, sql: str, args: Sequence[Any], error: BaseException) -> BaseException:
        """A driver error as SQLAlchemy would raise it; a lost connection invalidates the
        pool (the others likely went with it) and is DatabaseUnavailable."""
        connection, driver = self._connection, self.driver
        assert connection is not None
        assert driver is not None
        if not isinstance(error, Exception):
            # Cancelled mid-statement: the connection's state is unknown, retire it.
            connection.invalidate(error, soft=True)
            return error
        if driver.is_closed() or is_connection_loss(error):
            pool = self._engine.sync_engine.pool
            await invalidate_pool(pool, connection, error)
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


class PgRunner:
    """Runs each statement on a connection of its own, autocommitted: one round trip."""

    __slots__ = ("_engine", "_span")

    def __init__(self, engine: AsyncEngine, *, span: SqlSpan | None = None) -> None:
        self._engine = engine
        self._span = span

    async def rows(self, statement: Statement, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute one statement (a write commits); the rows it returns."""
        async with PgConnection(self._engine, span=self._span) as connection:
            return await connection.rows(statement, params)


class PgTransaction:
    """One connection between BEGIN and COMMIT (ROLLBACK if the block raises)."""

    __slots__ = ("_connection",)

    def __init__(self, engine: AsyncEngine, *, span: SqlSpan | None = None) -> None:
        self._connection = PgConnection(engine, span=span)

    async def __aenter__(self) -> PgConnection:
        connection = await self._connection.__aenter__()
        try:
            await connection.execute("BEGIN")
        except BaseException as error:
            await self._connection.__aexit__(type(error), error, error.__traceback__)
            raise
        return connection

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection = self._connection
        try:
            if error is None:
                await connection.execute("COMMIT")
            else:
                await self._roll_back(connection)
        finally:
            await connection.__aexit__(kind, error, traceback)

    @staticmethod
    async def _roll_back(connection: PgConnection) -> None:
        # The pool's reset-on-return does not end a transaction begun outside SQLAlchemy:
        # roll back here, or retire the connection if even that fails.
        try:
            if connection.driver is not None and not connection.driver.is_closed():
                await connection.execute("ROLLBACK")
        except BaseException:
            connection.discard()
            raise


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

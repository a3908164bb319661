"""Hot-path statements: compiled once by SQLAlchemy, run by the database driver itself.

The token grants' few statements skip SQLAlchemy's per-execute layers (a third or more of
a refresh's event-loop time): on PostgreSQL one asyncpg round trip each, on SQLite one hop
to aiosqlite's thread per statement or per write transaction. Connections still come from
the engine's pool, and driver errors are raised as SQLAlchemy's, so pool invalidation and
the 503 mapping work as for any other statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # no stubs or py.typed
from sqlalchemy import Dialect, Select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement
from sqlalchemy.util.concurrency import greenlet_spawn

from auth_service.db.engine import core_engine

__all__ = [
    "HotLookup",
    "PgConnection",
    "PgStatement",
    "SQLiteStatement",
    "hot_connection",
    "sqlite_transaction",
]

_T = TypeVar("_T")


def hot_connection(factory: async_sessionmaker[AsyncSession]) -> AsyncConnection | PgConnection:
    """A connection for the hot statements: asyncpg itself on PostgreSQL, else Core."""
    engine = core_engine(factory)
    if engine.dialect.name == "postgresql":
        return PgConnection(engine)
    return engine.connect()


class _Statement:
    """A Core statement compiled once by SQLAlchemy for one dialect: the SQL text, the
    order and bind processing of its parameters, and its columns' result processors."""

    def __init__(self, statement: ClauseElement, column_keys: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: _Compiled | None = None

    def compiled(self, dialect: Dialect) -> _Compiled:
        """The statement compiled for `dialect` (the first call compiles)."""
        return self._compiled or self._compile(dialect)

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._statement.compile(dialect=dialect, column_keys=self._column_keys)
        assert isinstance(compiled, SQLCompiler)
        assert compiled.positiontup is not None
        order = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            # A parameter (bindparam without a value), or a constant given in the statement.
            if bind.required:
                order.append(_Bind(bind.key, process))
            else:
                value = bind.effective_value
                order.append(_Bind(None, None, process(value) if process else value))
        columns = self._statement.selected_columns if isinstance(self._statement, Select) else ()
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        )
        read = isinstance(self._statement, Select)
        self._compiled = _Compiled(compiled.string, tuple(order), results, read)
        return self._compiled


class SQLiteStatement(_Statement):
    """A Core statement run by aiosqlite itself on an SQLAlchemy connection (hot paths).

    One thread hop per statement where SQLAlchemy's adapter takes three or four (cursor,
    execute, fetch, close), and none of its per-execute bookkeeping. The SQL and the bind
    and result processing are SQLAlchemy's, compiled once. Runs in the connection's
    SQLAlchemy transaction, which commits or rolls it back; driver errors are raised as
    SQLAlchemy's (OperationalError and so on), as from any other statement. A SELECT
    begins no transaction (SQLite reads outside one, as sqlite3 does). Several writes go
    to the driver's thread in one hop with sqlite_transaction().
    """

    async def rows(self, db: AsyncConnection, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute with `params` in db's transaction (begun if none); the rows it returns."""
        compiled = self._compiled or self._compile(db.dialect)
        args = tuple(bind.argument(params) for bind in compiled.binds)
        if not compiled.read and not db.in_transaction():
            await db.begin()
        driver = (await _raw(db)).driver_connection
        assert driver is not None
        try:
            rows = await driver.execute_fetchall(compiled.sql, args)
        except (sqlite3.Error, ValueError) as error:
            wrapped = await _wrapped(db, compiled.sql, args, error)
            if wrapped is error:
                raise
            raise wrapped from error
        return compiled.processed(rows)


async def sqlite_transaction(db: AsyncConnection, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run `work` on db's sqlite3 connection in aiosqlite's thread, in one hop, as one
    transaction: committed if it returns, rolled back if it raises.

    For writes outside db's SQLAlchemy transaction (there must be none): `work` runs
    compiled statements with _Compiled.run. Errors are raised as SQLAlchemy's.
    """
    assert not db.in_transaction(), "sqlite_transaction inside a SQLAlchemy transaction"
    driver = (await _raw(db)).driver_connection
    assert driver is not None
    try:
        # aiosqlite has no public call for "run this in your thread": _execute is it.
        return await driver._execute(_in_transaction, driver, work)  # type: ignore[no-any-return]
    except _Failed as failed:
        raise await _wrapped(db, failed.sql, failed.args, failed.error) from failed.error
    except ValueError as error:
        wrapped = await _wrapped(db, "", (), error)
        if wrapped is error:
            raise
        raise wrapped from error


def _in_transaction(driver: Any, work: Callable[[sqlite3.Connection], _T]) -> _T:
    """In aiosqlite's thread: `work`, then COMMIT, or ROLLBACK if either fails."""
    connection: sqlite3.Connection = driver._conn  # ValueError if closed meanwhile
    try:
        result = work(connection)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    return result


class _Failed(Exception):
    """A statement's sqlite3 error in the driver's thread, with the statement."""

    def __init__(self, sql: str, args: tuple[Any, ...], error: sqlite3.Error) -> None:
        super().__init__(sql)
        self.sql, self.args, self.error = sql, args, error


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
        connection = await greenlet_spawn(self._engine.sync_engine.pool.connect)
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
        pool (the others likely went with it), as on a disconnect found by SQLAlchemy."""
        connection, driver = self._connection, self.driver
        assert connection is not None
        assert driver is not None
        if not isinstance(error, Exception):
            # Cancelled mid-statement: the connection's state is unknown, retire it.
            connection.invalidate(error, soft=True)
            return error
        gone = driver.is_closed()
        if gone:
            pool = self._engine.sync_engine.pool
            await greenlet_spawn(pool._invalidate, connection, error)
        dbapi = self._engine.dialect.loaded_dbapi
        translated = _pg_translated(dbapi, error, gone=gone)
        if translated is None:
            return error
        return DBAPIError.instance(
            sql,
            tuple(args),
            translated,
            dbapi.Error,
            hide_parameters=True,
            connection_invalidated=gone,
            dialect=self._engine.dialect,
        )


class PgStatement(_Statement):
    """A Core statement run by asyncpg itself on a PgConnection (hot paths).

    The SQL and the bind and result processing are SQLAlchemy's, compiled once; asyncpg
    prepares it once per connection (its statement cache), so a call is one round trip.
    Driver errors are raised as SQLAlchemy's (a lost connection as OperationalError or
    InterfaceError, which answer 503), as from a statement SQLAlchemy ran.
    """

    async def rows(self, db: PgConnection, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute with `params` (autocommitted); the rows it returns."""
        compiled = self._compiled or self._compile(db.dialect)
        args = [bind.argument(params) for bind in compiled.binds]
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


def _pg_translated(dbapi: Any, error: Exception, *, gone: bool) -> Exception | None:
    """asyncpg's error as the SQLAlchemy adapter's DBAPI error, None if it is no driver
    error. Whatever means the database is out of reach becomes OperationalError."""
    if isinstance(error, asyncpg.InterfaceError):
        kind = dbapi.InterfaceError
    elif gone or isinstance(error, OSError | asyncpg.PostgresConnectionError):
        kind = dbapi.OperationalError
    elif isinstance(error, asyncpg.IntegrityConstraintViolationError):
        kind = dbapi.IntegrityError
    elif isinstance(error, asyncpg.PostgresError):
        kind = dbapi.Error
    else:
        return None
    return kind(str(error.args[0]) if error.args else type(error).__name__, error)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class _Bind:
    key: str | None  # None: a constant, `value`
    process: Callable[[Any], Any] | None
    value: Any = None

    def argument(self, params: Mapping[str, Any]) -> Any:
        if self.key is None:
            return self.value
        value = params[self.key]
        return self.process(value) if self.process is not None else value


@dataclass(frozen=True)
class _Compiled:
    sql: str
    binds: tuple[_Bind, ...]
    results: tuple[Callable[[Any], Any] | None, ...]
    read: bool  # a SELECT

    def run(self, connection: sqlite3.Connection, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute on a sqlite3 connection, in its thread (see sqlite_transaction)."""
        args = tuple(bind.argument(params) for bind in self.binds)
        try:
            rows = connection.execute(self.sql, args).fetchall()
        except sqlite3.Error as error:
            raise _Failed(self.sql, args, error) from error
        return self.processed(rows)

    def processed(self, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """The rows with the columns' result processors applied."""
        if not any(self.results):
            return list(rows)
        return [
            tuple(
                process(value) if process is not None else value
                for process, value in zip(self.results, row, strict=True)
            )
            for row in rows
        ]


async def _raw(db: AsyncConnection) -> PoolProxiedConnection:
    """db's pooled DBAPI connection; without a greenlet switch when it is at hand."""
    sync = db.sync_connection
    if sync is not None and not sync.invalidated and not sync.closed:
        return sync.connection
    return await db.get_raw_connection()


async def _wrapped(
    db: AsyncConnection, sql: str, args: tuple[Any, ...], error: Exception
) -> BaseException:
    """A driver error as SQLAlchemy would raise it; a dead connection leaves the pool."""
    if isinstance(error, ValueError):
        # aiosqlite's words for a closed connection or stopped thread (as SQLAlchemy maps).
        if str(error).lower() not in ("no active connection", "connection closed"):
            return error
        error = sqlite3.OperationalError(str(error))
    gone = db.dialect.is_disconnect(error, None, None)  # type: ignore[arg-type]
    if gone:
        await db.invalidate()
    return DBAPIError.instance(
        sql,
        args,
        error,
        sqlite3.Error,
        hide_parameters=True,
        connection_invalidated=gone,
        dialect=db.dialect,
    )


class HotLookup:
    """A SELECT of at most one row, run by whatever holds it: asyncpg on a PgConnection,
    aiosqlite on an SQLite AsyncConnection, SQLAlchemy on anything else (ORM sessions)."""

    def __init__(self, statement: Select[Any]) -> None:
        self._statement = statement
        self._pg = PgStatement(statement)
        self._sqlite = SQLiteStatement(statement)

    async def first(
        self, db: PgConnection | AsyncConnection | AsyncSession, params: Mapping[str, Any]
    ) -> Sequence[Any] | None:
        """The first row for `params`, or None."""
        if isinstance(db, PgConnection):
            rows = await self._pg.rows(db, params)
        elif isinstance(db, AsyncConnection) and db.dialect.name == "sqlite":
            rows = await self._sqlite.rows(db, params)
        else:
            found: Sequence[Any] | None = (await db.execute(self._statement, params)).one_or_none()
            return found
        return rows[0] if rows else None

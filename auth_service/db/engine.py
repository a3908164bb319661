"""Build the async engine and session factory for a database URL."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Select, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

__all__ = [
    "POOL_RECYCLE_SECONDS",
    "SQLiteStatement",
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


class SQLiteStatement:
    """A Core statement run by aiosqlite itself on an SQLAlchemy connection (hot paths).

    One thread hop per statement where SQLAlchemy's adapter takes three or four (cursor,
    execute, fetch, close), and none of its per-execute bookkeeping. The SQL and the bind
    and result processing are SQLAlchemy's, compiled once. Runs in the connection's
    SQLAlchemy transaction, which commits or rolls it back; driver errors are raised as
    SQLAlchemy's (OperationalError and so on), as from any other statement.
    """

    def __init__(self, statement: ClauseElement, column_keys: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: _SQLiteCompiled | None = None

    def _compile(self, dialect: Dialect) -> _SQLiteCompiled:
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
        self._compiled = _SQLiteCompiled(compiled.string, tuple(order), results)
        return self._compiled

    async def rows(self, db: AsyncConnection, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute with `params` in db's transaction (begun if none); the rows it returns."""
        compiled = self._compiled or self._compile(db.dialect)
        args = tuple(bind.argument(params) for bind in compiled.binds)
        if not db.in_transaction():
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
        if not any(compiled.results):
            return list(rows)
        return [
            tuple(
                process(value) if process is not None else value
                for process, value in zip(compiled.results, row, strict=True)
            )
            for row in rows
        ]


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
class _SQLiteCompiled:
    sql: str
    binds: tuple[_Bind, ...]
    results: tuple[Callable[[Any], Any] | None, ...]


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

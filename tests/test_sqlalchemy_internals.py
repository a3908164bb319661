"""The SQLAlchemy internals db/sqlalchemy_internals.py reads behave as the adapter says,
on the installed SQLAlchemy: an upgrade that changes one fails here first."""

from __future__ import annotations

from sqlalchemy import bindparam, column, literal, select, table
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.sql.compiler import SQLCompiler

from auth_service.db.sqlalchemy_internals import (
    constant_value,
    in_greenlet,
    invalidate_pool,
    positional_binds,
)

_ITEMS = table("items", column("a"), column("b"))
# Parameters out of alphabetical order, with a constant between them.
_QUERY = select(_ITEMS.c.a).where(
    _ITEMS.c.b == bindparam("second"), _ITEMS.c.a == literal(7), _ITEMS.c.a > bindparam("first")
)


def test_positional_binds_follow_the_placeholders_of_each_dialect() -> None:
    # The asyncpg dialect as the URL names it (its class's __init__ is unannotated).
    asyncpg_dialect = make_url("postgresql+asyncpg://").get_dialect()()
    for dialect in (asyncpg_dialect, SQLiteDialect_pysqlite()):
        compiled = _QUERY.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        binds = positional_binds(compiled)
        assert [bind.key if bind.required else "constant" for bind in binds] == [
            "second",
            "constant",
            "first",
        ]
        assert constant_value(binds[1]) == 7


async def test_in_greenlet_runs_sync_pool_code_that_awaits(postgres_url: str) -> None:
    engine = create_async_engine(postgres_url, pool_size=1, max_overflow=0)
    try:
        connection = await in_greenlet(engine.sync_engine.pool.connect)
        driver = connection.driver_connection  # Any | None: None once detached
        assert driver is not None
        assert not driver.is_closed()
        await in_greenlet(connection.close)
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()


async def test_invalidate_pool_retires_every_older_connection(postgres_url: str) -> None:
    engine = create_async_engine(postgres_url, pool_size=2, max_overflow=0)
    pool = engine.sync_engine.pool
    try:
        first = await in_greenlet(pool.connect)
        second = await in_greenlet(pool.connect)
        drivers = [first.driver_connection, second.driver_connection]  # kept alive: no id reuse
        await in_greenlet(second.close)  # idle in the pool
        await invalidate_pool(pool, first, ConnectionResetError("cut"))
        await in_greenlet(first.close)
        again = await in_greenlet(pool.connect)  # neither old connection comes back
        assert all(again.driver_connection is not old for old in drivers)
        await in_greenlet(again.close)
    finally:
        await engine.dispose()

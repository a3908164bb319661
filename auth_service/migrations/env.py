"""Alembic environment: runs migrations over the service's own async engine."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from auth_service.db.base import Base
from auth_service.db.engine import create_engine, is_sqlite

target_metadata = Base.metadata


# pg_advisory_xact_lock key of "migrations of this database" (any fixed 64-bit number).
MIGRATION_LOCK_KEY = 0x61757468_6D696772  # b"authmigr"


def _lock_out_other_migrations(connection: Connection) -> None:
    """Serialise concurrent `migrate` runs: the second waits, then finds the schema current.

    Taken inside the migration transaction, before Alembic reads the version table, and
    released by its commit or rollback. PostgreSQL: an advisory lock of this database.
    SQLite: an exclusive transaction (the driver starts none before DDL on its own); other
    writers wait up to the busy timeout.
    """
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
    elif connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN EXCLUSIVE")


def _run(connection: Connection) -> None:
    url = str(connection.engine.url)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=is_sqlite(url),  # SQLite cannot ALTER most things in place
        # SQLite's DDL is transactional too: one transaction for the whole run, which the
        # exclusive lock below opens, so a concurrent run never sees a half-done schema.
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        _lock_out_other_migrations(connection)
        context.run_migrations()


async def _run_online(url: str) -> None:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


asyncio.run(_run_online(context.config.get_main_option("sqlalchemy.url") or ""))

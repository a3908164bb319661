"""Apply the shipped Alembic migrations to a database URL."""

from __future__ import annotations

import functools

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "alembic_config",
    "code_heads",
    "database_revisions",
    "schema_is_behind",
    "upgrade_to_head",
]


VERSION_TABLE = "alembic_version"  # Alembic's default, which env.py keeps


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", "auth_service:migrations")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Bring the schema up to date; idempotent, so `make run` applies it on every start."""
    command.upgrade(alembic_config(url), "head")


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config("sqlite://"))


def code_heads() -> frozenset[str]:
    """The head revision(s) of the migrations shipped with this code."""
    return frozenset(_scripts().get_heads())


def _database_revisions(connection: Connection) -> frozenset[str]:
    # Read directly: Alembic's MigrationContext logs two INFO lines per call.
    if not inspect(connection).has_table(VERSION_TABLE):
        return frozenset()
    return frozenset(connection.execute(text("SELECT version_num FROM alembic_version")).scalars())


async def database_revisions(engine: AsyncEngine) -> frozenset[str]:
    """The revisions the database is at (empty if never migrated); raises if unreachable."""
    async with engine.connect() as connection:
        return await connection.run_sync(_database_revisions)


def schema_is_behind(current: frozenset[str]) -> bool:
    """True when the database lacks a migration of this code (older, or never migrated).

    A database migrated past this code (a newer replica ran `migrate` during a rolling
    upgrade) is not behind: its revisions are unknown here, and migrations are written so
    that the previous release keeps working.
    """
    heads = code_heads()
    if current == heads:
        return False
    if not current:
        return True
    scripts = _scripts()
    known = {revision.revision for revision in scripts.walk_revisions()}
    if not current <= known:
        return False
    applied = {
        revision.revision
        for revision in scripts.iterate_revisions(tuple(current), "base")
        if revision is not None
    }
    return not heads <= applied

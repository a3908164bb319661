"""Apply the shipped Alembic migrations to a database URL, up to head or to a revision."""

from __future__ import annotations

import asyncio
import functools
import sqlite3

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from auth_service.db.engine import create_engine

__all__ = [
    "UnknownRevisionError",
    "alembic_config",
    "code_heads",
    "current_revision",
    "database_revisions",
    "migrate_to",
    "schema_is_behind",
    "upgrade_to_head",
]


class UnknownRevisionError(ValueError):
    """`migrate --to` named a revision the shipped migrations do not have."""


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


def migrate_to(url: str, revision: str) -> None:
    """Upgrade or downgrade the schema to `revision` ("head", "base" or a revision id)."""
    config = alembic_config(url)
    script = ScriptDirectory.from_config(config)
    if revision not in ("head", "base"):
        try:
            script.get_revision(revision)
        except CommandError as exc:
            raise UnknownRevisionError(revision) from exc
    target = script.get_current_head() if revision == "head" else revision
    current = current_revision(url)
    if target == "base" or (
        current is not None and target != current and _is_ancestor(script, target, current)
    ):
        command.downgrade(config, revision)
    else:
        command.upgrade(config, revision)


def _is_ancestor(script: ScriptDirectory, older: str | None, newer: str) -> bool:
    """True when `older` lies below `newer` in the revision chain."""
    return any(rev.revision == older for rev in script.iterate_revisions(newer, "base"))


def current_revision(url: str) -> str | None:
    """The revision the database's schema is at (None: not migrated at all)."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async def run() -> str | None:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(read)
        finally:
            await engine.dispose()

    return asyncio.run(run())


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


def sqlite_revisions(connection: sqlite3.Connection) -> frozenset[str]:
    """_database_revisions on a bare sqlite3 connection (the SQLite worker's)."""
    found = connection.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (VERSION_TABLE,)
    ).fetchone()
    if found is None:
        return frozenset()
    return frozenset(
        row[0] for row in connection.execute("SELECT version_num FROM alembic_version")
    )


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

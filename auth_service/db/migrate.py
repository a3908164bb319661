"""Apply the shipped Alembic migrations to a database URL, up to head or to a revision."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy.engine import Connection

from auth_service.db.engine import create_engine

__all__ = [
    "UnknownRevisionError",
    "alembic_config",
    "current_revision",
    "migrate_to",
    "upgrade_to_head",
]


class UnknownRevisionError(ValueError):
    """`migrate --to` named a revision the shipped migrations do not have."""


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

"""Apply the shipped Alembic migrations to a database URL."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

__all__ = ["alembic_config", "upgrade_to_head"]


def alembic_config(url: str) -> Config:
    """An Alembic config pointing at the packaged migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", "auth_service:migrations")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade_to_head(url: str) -> None:
    """Bring the schema up to date; idempotent, so `make run` applies it on every start."""
    command.upgrade(alembic_config(url), "head")

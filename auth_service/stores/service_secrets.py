"""Secrets the service makes for itself, over an AsyncSession; the caller owns the transaction."""

from __future__ import annotations

from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.models import ServiceSecret

__all__ = ["ensure_secret"]

_SECRETS = cast(Table, ServiceSecret.__table__)


async def ensure_secret(session: AsyncSession, name: str, candidate: str) -> str:
    """The secret called `name`, storing `candidate` first when there is none.

    The first writer wins (INSERT ... ON CONFLICT DO NOTHING, then read), so replicas
    starting together all end up with the same value.
    """
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    await session.execute(
        insert(_SECRETS).values(name=name, value=candidate).on_conflict_do_nothing()
    )
    value = await session.scalar(select(_SECRETS.c.value).where(_SECRETS.c.name == name))
    return str(value)

"""Users as administrators see them: listing, one account's state, enabling, deleting."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.models import Session, User

__all__ = [
    "AdminUserRow",
    "count_open_sessions",
    "delete_user",
    "enable_user",
    "get_admin_row",
    "list_admin_rows",
]

_USERS = cast(Table, User.__table__)


@dataclass(frozen=True)
class AdminUserRow:
    """Everything an administrator may see of an account (never the hash)."""

    id: str
    username: str
    canonical_name: str
    is_active: bool
    scopes: str
    created_at: datetime
    updated_at: datetime
    tokens_valid_after: datetime | None


_COLUMNS = (
    _USERS.c.id,
    _USERS.c.username,
    _USERS.c.username_canonical,
    _USERS.c.is_active,
    _USERS.c.scopes,
    _USERS.c.created_at,
    _USERS.c.updated_at,
    _USERS.c.tokens_valid_after,
)


async def list_admin_rows(
    session: AsyncSession, *, disabled_only: bool, after: str | None, limit: int
) -> list[AdminUserRow]:
    """Up to `limit` users ordered by canonical name, after the `after` name (keyset page)."""
    query = select(*_COLUMNS).order_by(_USERS.c.username_canonical).limit(limit)
    if disabled_only:
        query = query.where(_USERS.c.is_active.is_(False))
    if after is not None:
        query = query.where(_USERS.c.username_canonical > after)
    return [AdminUserRow(*row) for row in (await session.execute(query)).all()]


async def get_admin_row(session: AsyncSession, canonical_name: str) -> AdminUserRow | None:
    """One user by canonical name."""
    result = await session.execute(
        select(*_COLUMNS).where(_USERS.c.username_canonical == canonical_name)
    )
    row = result.one_or_none()
    return AdminUserRow(*row) if row is not None else None


async def count_open_sessions(session: AsyncSession, user_id: str, now: datetime) -> int:
    """Sessions of the user that can still be refreshed."""
    result = await session.execute(
        select(func.count())
        .select_from(Session)
        .where(
            Session.user_id == user_id,
            Session.revoked_at.is_(None),
            Session.idle_expires_at > now,
            Session.absolute_expires_at > now,
        )
    )
    return int(result.scalar_one())


async def enable_user(session: AsyncSession, user_id: str, *, now: datetime) -> None:
    """Allow logins again; tokens cut off by the disable stay dead (tokens_valid_after)."""
    await session.execute(
        update(_USERS).where(_USERS.c.id == user_id).values(is_active=True, updated_at=now)
    )


async def delete_user(session: AsyncSession, user_id: str) -> bool:
    """Delete a disabled user; sessions and refresh tokens go with it (ON DELETE CASCADE)."""
    result = await session.execute(
        delete(_USERS).where(_USERS.c.id == user_id, _USERS.c.is_active.is_(False))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]

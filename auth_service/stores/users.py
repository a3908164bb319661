"""User repository over an AsyncSession; the caller owns the transaction.

Hot statements are SQLAlchemy Core on the users table (no ORM unit of work or identity
map); reads return plain frozen records. The login lookup also takes a hot_connection().
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from auth_service.db.hot import HotConnection, HotLookup
from auth_service.errors import UsernameTaken
from auth_service.models import User

__all__ = [
    "UserRecord",
    "add_user",
    "disable_user",
    "get_active_profile",
    "get_user_by_id",
    "get_user_by_username",
    "replace_password_hash",
    "set_password_hash",
    "set_scopes",
]


_USERS = cast(Table, User.__table__)


@dataclass(frozen=True)
class UserRecord:
    """A user as the services read it."""

    id: str
    username: str
    password_hash: str
    is_active: bool
    scopes: str


_RECORD_COLUMNS = (
    _USERS.c.id,
    _USERS.c.username,
    _USERS.c.password_hash,
    _USERS.c.is_active,
    _USERS.c.scopes,
)


# Built once (the login path): execute() binds the name, the compiled form is reused.
_BY_USERNAME = select(*_RECORD_COLUMNS).where(_USERS.c.username_canonical == bindparam("name"))
_BY_USERNAME_LOOKUP = HotLookup(_BY_USERNAME)


async def get_user_by_username(
    db: HotConnection | AsyncConnection | AsyncSession, canonical_name: str
) -> UserRecord | None:
    """Look a user up by the case-folded username."""
    row = await _BY_USERNAME_LOOKUP.first(db, {"name": canonical_name})
    return UserRecord(*row) if row is not None else None


async def get_user_by_id(session: AsyncSession, user_id: str) -> UserRecord | None:
    """Look a user up by id (the `sub` of their tokens)."""
    result = await session.execute(select(*_RECORD_COLUMNS).where(_USERS.c.id == user_id))
    row = result.one_or_none()
    return UserRecord(*row) if row is not None else None


async def get_active_profile(
    session: AsyncSession, user_id: str
) -> tuple[str, str, datetime] | None:
    """(id, username, created_at) of an active user, or None (one Core SELECT, no ORM)."""
    result = await session.execute(
        select(_USERS.c.id, _USERS.c.username, _USERS.c.created_at).where(
            _USERS.c.id == user_id, _USERS.c.is_active.is_(True)
        )
    )
    row = result.one_or_none()
    return (row[0], row[1], row[2]) if row is not None else None


async def add_user(
    session: AsyncSession,
    *,
    username: str,
    canonical_name: str,
    skeleton: str,
    password_hash: str,
    now: datetime,
) -> User:
    """Insert a user; the unique indexes decide races between equal or confusable names."""
    user = User(
        username=username,
        username_canonical=canonical_name,
        username_skeleton=skeleton,
        password_hash=password_hash,
        is_active=True,
        created_at=now,
        updated_at=now,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise UsernameTaken from exc
    return user


async def replace_password_hash(
    session: AsyncSession, user_id: str, *, expected_hash: str, new_hash: str, now: datetime
) -> None:
    """Swap in an upgraded hash unless the password changed meanwhile."""
    await session.execute(
        update(_USERS)
        .where(_USERS.c.id == user_id, _USERS.c.password_hash == expected_hash)
        .values(password_hash=new_hash, updated_at=now)
    )


async def set_password_hash(
    session: AsyncSession, user_id: str, *, new_hash: str, now: datetime
) -> None:
    """Store a new password hash (a password change)."""
    await session.execute(
        update(_USERS).where(_USERS.c.id == user_id).values(password_hash=new_hash, updated_at=now)
    )


async def disable_user(session: AsyncSession, user_id: str, *, now: datetime) -> None:
    """Block logins and mark every token issued until now as dead."""
    await session.execute(
        update(_USERS)
        .where(_USERS.c.id == user_id)
        .values(is_active=False, tokens_valid_after=now, updated_at=now)
    )


async def set_scopes(session: AsyncSession, user_id: str, *, scopes: str, now: datetime) -> None:
    """Replace the scopes a user may be granted."""
    await session.execute(
        update(_USERS).where(_USERS.c.id == user_id).values(scopes=scopes, updated_at=now)
    )

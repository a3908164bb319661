"""User repository over an AsyncSession; the caller owns the transaction."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.errors import UsernameTaken
from auth_service.models import User

__all__ = [
    "add_user",
    "disable_user",
    "get_active_profile",
    "get_user_by_id",
    "get_user_by_username",
    "replace_password_hash",
    "set_password_hash",
    "set_scopes",
]


async def get_user_by_username(session: AsyncSession, canonical_name: str) -> User | None:
    """Look a user up by the case-folded username."""
    result = await session.execute(select(User).where(User.username_canonical == canonical_name))
    return result.scalar_one_or_none()


async def get_user_by_id(session: AsyncSession, user_id: str) -> User | None:
    """Look a user up by id (the `sub` of their tokens)."""
    return await session.get(User, user_id)


async def get_active_profile(
    session: AsyncSession, user_id: str
) -> tuple[str, str, datetime] | None:
    """(id, username, created_at) of an active user, or None (one Core SELECT, no ORM)."""
    result = await session.execute(
        select(User.id, User.username, User.created_at).where(
            User.id == user_id, User.is_active.is_(True)
        )
    )
    row = result.one_or_none()
    return (row[0], row[1], row[2]) if row is not None else None


async def add_user(
    session: AsyncSession, *, username: str, canonical_name: str, password_hash: str, now: datetime
) -> User:
    """Insert a user; the unique index decides races between equal names."""
    user = User(
        username=username,
        username_canonical=canonical_name,
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
        update(User)
        .where(User.id == user_id, User.password_hash == expected_hash)
        .values(password_hash=new_hash, updated_at=now)
    )


async def set_password_hash(
    session: AsyncSession, user_id: str, *, new_hash: str, now: datetime
) -> None:
    """Store a new password hash (a password change)."""
    await session.execute(
        update(User).where(User.id == user_id).values(password_hash=new_hash, updated_at=now)
    )


async def disable_user(session: AsyncSession, user_id: str, *, now: datetime) -> None:
    """Block logins and mark every token issued until now as dead."""
    await session.execute(
        update(User)
        .where(User.id == user_id)
        .values(is_active=False, tokens_valid_after=now, updated_at=now)
    )


async def set_scopes(session: AsyncSession, user_id: str, *, scopes: str, now: datetime) -> None:
    """Replace the scopes a user may be granted."""
    await session.execute(
        update(User).where(User.id == user_id).values(scopes=scopes, updated_at=now)
    )

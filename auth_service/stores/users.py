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
    "change_password_hash",
    "disable_user",
    "get_active_profile",
    "get_user_by_id",
    "get_user_by_username",
    "is_active",
    "password_hash_sample",
    "replace_password_hash",
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
    # As read with the hash: a session opens only while it is still current.
    credential_version: int


_RECORD_COLUMNS = (
    _USERS.c.id,
    _USERS.c.username,
    _USERS.c.password_hash,
    _USERS.c.is_active,
    _USERS.c.scopes,
    _USERS.c.credential_version,
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


async def is_active(session: AsyncSession, user_id: str) -> bool:
    """True if the user exists and is not disabled (read from SQL, the truth)."""
    result = await session.execute(
        select(_USERS.c.id).where(_USERS.c.id == user_id, _USERS.c.is_active.is_(True))
    )
    return result.first() is not None


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
        credential_version=0,
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


async def change_password_hash(
    session: AsyncSession, user_id: str, *, expected_version: int, new_hash: str, now: datetime
) -> int | None:
    """Store a new hash and bump the credential version, unless the version moved since it
    was read (a concurrent change or disable): then None. Locks the row until commit, so
    no session can open for the user meanwhile."""
    result = await session.execute(
        update(_USERS)
        .where(
            _USERS.c.id == user_id,
            _USERS.c.is_active.is_(True),
            _USERS.c.credential_version == expected_version,
        )
        .values(
            password_hash=new_hash,
            credential_version=_USERS.c.credential_version + 1,
            updated_at=now,
        )
        .returning(_USERS.c.credential_version)
    )
    version = result.scalar_one_or_none()
    return int(version) if version is not None else None


async def disable_user(session: AsyncSession, user_id: str, *, now: datetime) -> int | None:
    """Block logins and bump the credential version; the new version (None if no such
    user). Tokens carrying an older version are dead. Locks the row until commit."""
    result = await session.execute(
        update(_USERS)
        .where(_USERS.c.id == user_id)
        .values(
            is_active=False,
            credential_version=_USERS.c.credential_version + 1,
            tokens_valid_after=now,
            updated_at=now,
        )
        .returning(_USERS.c.credential_version)
    )
    version = result.scalar_one_or_none()
    return int(version) if version is not None else None


async def set_scopes(session: AsyncSession, user_id: str, *, scopes: str, now: datetime) -> None:
    """Replace the scopes a user may be granted."""
    await session.execute(
        update(_USERS).where(_USERS.c.id == user_id).values(scopes=scopes, updated_at=now)
    )


async def password_hash_sample(session: AsyncSession, limit: int) -> list[str]:
    """Up to `limit` stored hashes; ids are random UUIDs, so ordering by id samples evenly."""
    result = await session.execute(
        select(_USERS.c.password_hash).order_by(_USERS.c.id).limit(limit)
    )
    return list(result.scalars())

"""Users in SQL: the statements are dialect-neutral Core, so both backends share them.

Each backend compiles them once for its own dialect (db/statements.py) and runs them on
its own runner: asyncpg on PostgreSQL, the worker thread on SQLite.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from auth_service.db.runner import Runner
from auth_service.db.statements import Statement
from auth_service.errors import UsernameTaken
from auth_service.models import User
from auth_service.repositories.rows import AdminUserRow, ProfileRow, UserInfoRow, UserRecord

__all__ = ["SqlHashSamples", "SqlUsers"]

_USERS = cast(Table, User.__table__)
DEFAULT_SCOPES = "profile"  # what a new account may be granted (models.User.scopes)
_C = _USERS.c
_RECORD = (_C.id, _C.username, _C.password_hash, _C.is_active, _C.scopes, _C.credential_version)
_ADMIN = (
    _C.id,
    _C.username,
    _C.username_canonical,
    _C.is_active,
    _C.scopes,
    _C.created_at,
    _C.updated_at,
    _C.tokens_valid_after,
)

_BY_USERNAME = Statement(select(*_RECORD).where(_C.username_canonical == bindparam("name")))
_BY_ID = Statement(select(*_RECORD).where(_C.id == bindparam("id")))
_IS_ACTIVE = Statement(select(_C.id).where(_C.id == bindparam("id"), _C.is_active.is_(True)))
_PROFILE = Statement(
    select(_C.id, _C.username, _C.created_at).where(
        _C.id == bindparam("id"), _C.is_active.is_(True)
    )
)
_USERINFO = Statement(
    select(_C.id, _C.username, _C.updated_at).where(
        _C.id == bindparam("id"), _C.is_active.is_(True)
    )
)
_ADD = Statement(
    insert(_USERS).returning(_C.id, _C.username, _C.created_at),
    [
        "id",
        "username",
        "username_canonical",
        "username_skeleton",
        "password_hash",
        "is_active",
        "scopes",
        "credential_version",
        "created_at",
        "updated_at",
    ],
)
_REPLACE_HASH = Statement(
    update(_USERS)
    .where(_C.id == bindparam("id"), _C.password_hash == bindparam("expected"))
    .values(password_hash=bindparam("new"), updated_at=bindparam("now"))
)
_CHANGE_HASH = Statement(
    update(_USERS)
    .where(
        _C.id == bindparam("id"),
        _C.is_active.is_(True),
        _C.credential_version == bindparam("expected"),
    )
    .values(
        password_hash=bindparam("new"),
        credential_version=_C.credential_version + 1,
        updated_at=bindparam("now"),
    )
    .returning(_C.credential_version)
)
_DISABLE = Statement(
    update(_USERS)
    .where(_C.id == bindparam("id"))
    .values(
        is_active=False,
        credential_version=_C.credential_version + 1,
        tokens_valid_after=bindparam("now"),
        updated_at=bindparam("now"),
    )
    .returning(_C.credential_version)
)
_ENABLE = Statement(
    update(_USERS)
    .where(_C.id == bindparam("id"))
    .values(is_active=True, updated_at=bindparam("now"))
)
_SET_SCOPES = Statement(
    update(_USERS)
    .where(_C.id == bindparam("id"))
    .values(scopes=bindparam("scopes"), updated_at=bindparam("now"))
)
_DELETE_DISABLED = Statement(
    delete(_USERS).where(_C.id == bindparam("id"), _C.is_active.is_(False)).returning(_C.id)
)
_ADMIN_ROW = Statement(select(*_ADMIN).where(_C.username_canonical == bindparam("name")))
_SAMPLE = Statement(select(_C.password_hash).order_by(_C.id).limit(bindparam("limit")))


def _admin_page_statement(*, disabled_only: bool, after: bool) -> Statement:
    query = select(*_ADMIN).order_by(_C.username_canonical).limit(bindparam("limit"))
    if disabled_only:
        query = query.where(_C.is_active.is_(False))
    if after:
        query = query.where(_C.username_canonical > bindparam("after"))
    return Statement(query)


_ADMIN_PAGES = {
    (disabled, after): _admin_page_statement(disabled_only=disabled, after=after)
    for disabled in (False, True)
    for after in (False, True)
}


class SqlUsers:
    """UserRepository over any runner (a backend subclasses it)."""

    __slots__ = ("_db",)

    def __init__(self, db: Runner) -> None:
        self._db = db

    async def by_username(self, canonical_name: str) -> UserRecord | None:
        """A user by case-folded username (the login lookup: one round trip)."""
        rows = await self._db.rows(_BY_USERNAME, {"name": canonical_name})
        return UserRecord(*rows[0]) if rows else None

    async def by_id(self, user_id: str) -> UserRecord | None:
        """A user by id."""
        rows = await self._db.rows(_BY_ID, {"id": user_id})
        return UserRecord(*rows[0]) if rows else None

    async def is_active(self, user_id: str) -> bool:
        """True if the user exists and is not disabled."""
        return bool(await self._db.rows(_IS_ACTIVE, {"id": user_id}))

    async def active_profile(self, user_id: str) -> ProfileRow | None:
        """An active user's profile, or None."""
        rows = await self._db.rows(_PROFILE, {"id": user_id})
        return ProfileRow(*rows[0]) if rows else None

    async def userinfo(self, user_id: str) -> UserInfoRow | None:
        """What /userinfo may release about an active user, or None."""
        rows = await self._db.rows(_USERINFO, {"id": user_id})
        return UserInfoRow(*rows[0]) if rows else None

    async def add(
        self,
        *,
        username: str,
        canonical_name: str,
        skeleton: str,
        password_hash: str,
        now: datetime,
    ) -> ProfileRow:
        """Insert a user; the unique indexes decide races between equal or confusable names."""
        values = {
            "id": str(uuid.uuid4()),
            "username": username,
            "username_canonical": canonical_name,
            "username_skeleton": skeleton,
            "password_hash": password_hash,
            "is_active": True,
            "scopes": DEFAULT_SCOPES,
            "credential_version": 0,
            "created_at": now,
            "updated_at": now,
        }
        try:
            rows = await self._db.rows(_ADD, values)
        except IntegrityError as exc:
            raise UsernameTaken from exc
        return ProfileRow(*rows[0])

    async def replace_password_hash(
        self, user_id: str, *, expected_hash: str, new_hash: str, now: datetime
    ) -> None:
        """Swap in an upgraded hash unless the password changed meanwhile."""
        params = {"id": user_id, "expected": expected_hash, "new": new_hash, "now": now}
        await self._db.rows(_REPLACE_HASH, params)

    async def change_password_hash(
        self, user_id: str, *, expected_version: int, new_hash: str, now: datetime
    ) -> int | None:
        """Store a new hash and bump the credential version unless it moved (then None)."""
        params = {"id": user_id, "expected": expected_version, "new": new_hash, "now": now}
        rows = await self._db.rows(_CHANGE_HASH, params)
        return int(rows[0][0]) if rows else None

    async def disable(self, user_id: str, *, now: datetime) -> int | None:
        """Block logins and bump the credential version; the new version or None."""
        rows = await self._db.rows(_DISABLE, {"id": user_id, "now": now})
        return int(rows[0][0]) if rows else None

    async def enable(self, user_id: str, *, now: datetime) -> None:
        """Allow logins again."""
        await self._db.rows(_ENABLE, {"id": user_id, "now": now})

    async def set_scopes(self, user_id: str, *, scopes: str, now: datetime) -> None:
        """Replace the scopes a user may be granted."""
        await self._db.rows(_SET_SCOPES, {"id": user_id, "scopes": scopes, "now": now})

    async def delete_disabled(self, user_id: str) -> bool:
        """Delete a disabled user; sessions and tokens go with it (ON DELETE CASCADE)."""
        return bool(await self._db.rows(_DELETE_DISABLED, {"id": user_id}))

    async def admin_page(
        self, *, disabled_only: bool, after: str | None, limit: int
    ) -> list[AdminUserRow]:
        """Up to `limit` users by canonical name after `after`."""
        statement = _ADMIN_PAGES[(disabled_only, after is not None)]
        rows = await self._db.rows(statement, {"limit": limit, "after": after})
        return [AdminUserRow(*row) for row in rows]

    async def admin_row(self, canonical_name: str) -> AdminUserRow | None:
        """One user by canonical name."""
        rows = await self._db.rows(_ADMIN_ROW, {"name": canonical_name})
        return AdminUserRow(*rows[0]) if rows else None


class SqlHashSamples:
    """HashSampleRepository over any runner (a backend subclasses it)."""

    __slots__ = ("_db",)

    def __init__(self, db: Runner) -> None:
        self._db = db

    async def sample(self, limit: int) -> list[str]:
        """Up to `limit` hashes; ids are random UUIDs, so ordering by id samples evenly."""
        return [row[0] for row in await self._db.rows(_SAMPLE, {"limit": limit})]

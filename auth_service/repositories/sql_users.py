"""Users in SQL: the statements are dialect-neutral Core, so both backends share them.

Each backend compiles them once for its own dialect (db/statements.py) and runs them on
its own runner: asyncpg on PostgreSQL, the worker thread on SQLite.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

from auth_service.db.runner import Runner
from auth_service.db.statements import Statement
from auth_service.errors import EmailTaken, UsernameTaken
from auth_service.models import Session, TotpFactor, User
from auth_service.repositories.rows import (
    AdminUserRow,
    ProfileRow,
    UserEmail,
    UserInfoRow,
    UserRecord,
)

__all__ = ["SqlHashSamples", "SqlUsers"]

_USERS = cast(Table, User.__table__)
_SESSIONS = cast(Table, Session.__table__)
DEFAULT_SCOPES = "profile"  # what a new account may be granted (models.User.scopes)
_C = _USERS.c
_FACTORS = cast(Table, TotpFactor.__table__)
# Read with the hash, in the same statement: does a login need a second factor?
_HAS_SECOND_FACTOR = (
    exists()
    .where(_FACTORS.c.user_id == _C.id, _FACTORS.c.confirmed_at.is_not(None))
    .label("has_second_factor")
)
_RECORD = (
    _C.id,
    _C.username,
    _C.password_hash,
    _C.is_active,
    _C.scopes,
    _C.credential_version,
    _HAS_SECOND_FACTOR,
)
_ADMIN = (
    _C.id,
    _C.username,
    _C.username_canonical,
    _C.is_active,
    _C.scopes,
    _C.created_at,
    _C.updated_at,
    _C.tokens_valid_after,
    _C.deleted_at,
)

_BY_USERNAME = Statement(select(*_RECORD).where(_C.username_canonical == bindparam("name")))
_BY_ID = Statement(select(*_RECORD).where(_C.id == bindparam("id")))
_IS_ACTIVE = Statement(select(_C.id).where(_C.id == bindparam("id"), _C.is_active.is_(True)))
_PROFILE_COLUMNS = (_C.id, _C.username, _C.created_at, _C.email, _C.email_verified)
_PROFILE = Statement(
    select(*_PROFILE_COLUMNS).where(_C.id == bindparam("id"), _C.is_active.is_(True))
)
_EMAIL = (
    _C.id,
    _C.username,
    _C.is_active,
    _C.credential_version,
    _C.email,
    _C.email_canonical,
    _C.email_verified,
)
_EMAIL_OF = Statement(select(*_EMAIL).where(_C.id == bindparam("id")))
_EMAIL_BY_USERNAME = Statement(select(*_EMAIL).where(_C.username_canonical == bindparam("name")))
_BY_VERIFIED_EMAIL = Statement(
    select(*_EMAIL).where(_C.email_canonical == bindparam("canonical"), _C.email_verified.is_(True))
)
_SET_EMAIL = Statement(
    update(_USERS)
    .where(_C.id == bindparam("id"))
    .values(
        email=bindparam("email"),
        email_canonical=bindparam("canonical"),
        email_verified=False,
        email_verified_at=None,
        updated_at=bindparam("now"),
    )
)
_USERINFO = Statement(
    select(_C.id, _C.username, _C.updated_at, _C.email, _C.email_verified).where(
        _C.id == bindparam("id"), _C.is_active.is_(True)
    )
)
_VERIFY_EMAIL = Statement(
    update(_USERS)
    .where(
        _C.id == bindparam("id"),
        _C.email_canonical == bindparam("canonical"),
        _C.email_verified.is_(False),
    )
    .values(email_verified=True, email_verified_at=bindparam("now"), updated_at=bindparam("now"))
    .returning(_C.id)
)
_ADD = Statement(
    insert(_USERS).returning(*_PROFILE_COLUMNS),
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
        "email",
        "email_canonical",
        "email_verified",
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
_BUMP_VERSION = Statement(
    update(_USERS)
    .where(_C.id == bindparam("id"), _C.is_active.is_(True))
    .values(credential_version=_C.credential_version + 1, updated_at=bindparam("now"))
    .returning(_C.credential_version)
)
# The name stays (reserved); what identified the person beyond it goes. "!" is no hash
# any scheme produces: a password check against it spends the dummy verify and fails.
ERASED_HASH = "!deleted"
_ERASE = Statement(
    update(_USERS)
    .where(_C.id == bindparam("id"), _C.is_active.is_(False))
    .values(
        password_hash=ERASED_HASH,
        scopes="",
        deleted_at=bindparam("now"),
        updated_at=bindparam("now"),
    )
)
_ERASE_ORIGINS = Statement(
    update(_SESSIONS)
    .where(_SESSIONS.c.user_id == bindparam("id"))
    .values(last_ip=None, last_user_agent=None)
)
_PURGE_DELETED = Statement(
    delete(_USERS).where(_C.deleted_at < bindparam("before")).returning(_C.id)
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
        email: str | None = None,
        email_canonical: str | None = None,
    ) -> ProfileRow:
        """Insert a user; the unique indexes decide races between equal or confusable names
        (an unverified address is in no unique index)."""
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
            "email": email,
            "email_canonical": email_canonical,
            "email_verified": False,
        }
        try:
            rows = await self._db.rows(_ADD, values)
        except IntegrityError as exc:
            raise UsernameTaken from exc
        return ProfileRow(*rows[0])

    async def email_of(self, user_id: str) -> UserEmail | None:
        """A user's address and state by id."""
        rows = await self._db.rows(_EMAIL_OF, {"id": user_id})
        return UserEmail(*rows[0]) if rows else None

    async def email_by_username(self, canonical_name: str) -> UserEmail | None:
        """A user's address and state by case-folded username."""
        rows = await self._db.rows(_EMAIL_BY_USERNAME, {"name": canonical_name})
        return UserEmail(*rows[0]) if rows else None

    async def by_verified_email(self, email_canonical: str) -> UserEmail | None:
        """The user who verified this canonical address (the partial index makes it one)."""
        rows = await self._db.rows(_BY_VERIFIED_EMAIL, {"canonical": email_canonical})
        return UserEmail(*rows[0]) if rows else None

    async def set_email(
        self, user_id: str, *, email: str, email_canonical: str, now: datetime
    ) -> None:
        """Replace the user's address with an unverified one."""
        params = {"id": user_id, "email": email, "canonical": email_canonical, "now": now}
        await self._db.rows(_SET_EMAIL, params)

    async def mark_email_verified(
        self, user_id: str, *, email_canonical: str, now: datetime
    ) -> bool:
        """Verify the address if still the user's and unverified; the partial unique index
        refuses it (EmailTaken) when another account verified it first."""
        params = {"id": user_id, "canonical": email_canonical, "now": now}
        try:
            return bool(await self._db.rows(_VERIFY_EMAIL, params))
        except IntegrityError as exc:
            raise EmailTaken from exc

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

    async def bump_credential_version(self, user_id: str, *, now: datetime) -> int | None:
        """Bump an active user's credential version; the new one, or None."""
        rows = await self._db.rows(_BUMP_VERSION, {"id": user_id, "now": now})
        return int(rows[0][0]) if rows else None

    async def erase(self, user_id: str, *, now: datetime) -> None:
        """Mark a disabled user deleted, its hash, scopes and session origins dropped."""
        await self._db.rows(_ERASE, {"id": user_id, "now": now})
        await self._db.rows(_ERASE_ORIGINS, {"id": user_id})

    async def purge_deleted(self, *, before: datetime) -> int:
        """Delete users erased before `before`; sessions go with them (CASCADE)."""
        return len(await self._db.rows(_PURGE_DELETED, {"before": before}))

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

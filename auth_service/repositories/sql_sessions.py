"""Sessions and refresh tokens in SQL: the statements and methods both backends share.

The reads, the revocation writes and the parts of the login and refresh writes are
dialect-neutral Core. Each backend assembles its own login and refresh writes from those
parts, the fastest way for it (repositories/postgres/sessions.py: one statement each;
sqlite/sessions.py: one worker job each), and says how a list of ids travels as one
parameter (`IdLists`), so that each statement compiles once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import ClassVar, Generic, TypeVar, cast

from sqlalchemy import (
    ColumnElement,
    Insert,
    Table,
    Update,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)

from auth_service.db.runner import Runner
from auth_service.db.statements import Statement
from auth_service.models import RefreshToken, Session, User
from auth_service.repositories.rows import RefreshFamily, RefreshTokenRow, SessionRow
from auth_service.repositories.sql_expiry import purge_all, purge_statement

__all__ = [
    "SESSIONS",
    "SESSION_COLUMNS",
    "TOKENS",
    "IdLists",
    "SqlSessions",
    "claim_token",
    "open_session_if_current",
    "touch_session",
]

SESSIONS = cast(Table, Session.__table__)
TOKENS = cast(Table, RefreshToken.__table__)
_USERS = cast(Table, User.__table__)
_S, _T, _U = SESSIONS.c, TOKENS.c, _USERS.c

SESSION_COLUMNS = tuple(_S[field.name] for field in fields(SessionRow))
_TOKEN_COLUMNS = tuple(_T[field.name] for field in fields(RefreshTokenRow))
_TOKEN_WIDTH, _SESSION_WIDTH = len(_TOKEN_COLUMNS), len(SESSION_COLUMNS)

_FIND_FAMILY = Statement(
    select(*_TOKEN_COLUMNS, *SESSION_COLUMNS, _U.username, _U.is_active, _U.scopes)
    .add_columns(_U.credential_version)
    .join_from(TOKENS, SESSIONS, _S.id == _T.session_id)
    .join(_USERS, _U.id == _S.user_id)
    .where(_T.token_hash == bindparam("hash"))
)

# A token is claimed only while its session is open and its user active, checked in the
# claiming statement itself: a disable or revocation committed after the family was read
# still stops the rotation.
_FAMILY_OPEN = exists().where(
    _S.id == _T.session_id, _S.revoked_at.is_(None), _U.id == _S.user_id, _U.is_active.is_(True)
)


def claim_token() -> Update:
    """UPDATE the unused token `hash` of an open family to used; RETURNING its session id."""
    return (
        update(TOKENS)
        .where(_T.token_hash == bindparam("hash"), _T.used_at.is_(None), _FAMILY_OPEN)
        .values(used_at=bindparam("now"), sealed_successor=bindparam("sealed"))
        .returning(_T.session_id)
    )


def touch_session(which: ColumnElement[bool]) -> Update:
    """UPDATE the session(s) `which` with this use: time, idle expiry, IP, user agent."""
    return (
        update(SESSIONS)
        .where(which)
        .values(
            last_used_at=bindparam("now"),
            idle_expires_at=bindparam("idle"),
            last_ip=bindparam("ip"),
            last_user_agent=bindparam("agent"),
        )
    )


def open_session_if_current(*, share_lock_user: bool) -> Insert:
    """INSERT the session (its columns are parameters) only while its user is active at
    the credential version read with the hash; RETURNING its id. `share_lock_user` reads
    the user row FOR SHARE (PostgreSQL: a concurrent password change or disable makes the
    login wait for its commit, then the condition is re-checked on the new row)."""
    current = select(
        *(
            _U.id if column.name == "user_id" else bindparam(column.name, type_=column.type)
            for column in SESSION_COLUMNS
        )
    ).where(
        _U.id == bindparam("user_id"),
        _U.is_active.is_(True),
        _U.credential_version == bindparam("credential_version"),
        # The code flow opens a session only while the user's scopes are unchanged since
        # the code was issued (None: no such condition).
        func.coalesce(bindparam("expected_scopes", type_=_U.scopes.type), _U.scopes) == _U.scopes,
    )
    if share_lock_user:
        current = current.with_for_update(read=True)
    return (
        insert(SESSIONS)
        .from_select([column.name for column in SESSION_COLUMNS], current)
        .returning(_S.id)
    )


def _open_at(now_param: str) -> list[ColumnElement[bool]]:
    return [
        _S.user_id == bindparam("user_id"),
        _S.revoked_at.is_(None),
        _S.idle_expires_at > bindparam(now_param),
        _S.absolute_expires_at > bindparam(now_param),
    ]


_LIST_OPEN = Statement(
    select(*SESSION_COLUMNS).where(*_open_at("now")).order_by(_S.created_at.desc(), _S.id)
)
_COUNT_OPEN = Statement(select(func.count()).select_from(SESSIONS).where(*_open_at("now")))
# Through the two indexed columns: an idle-expired session goes at its absolute expiry.
_PURGE_ENDED = purge_statement(
    SESSIONS,
    _S.id,
    or_(_S.absolute_expires_at < bindparam("before"), _S.revoked_at < bindparam("before")),
)
_UNREVOKED_SCOPES = Statement(
    select(_S.id, _S.scope).where(_S.user_id == bindparam("user_id"), _S.revoked_at.is_(None))
)


@dataclass(frozen=True, slots=True)
class IdLists:
    """The statements taking a list of session ids as one parameter `ids`, for a backend."""

    matching: Mapping[tuple[bool, bool], Statement]  # by (only given, keep given)
    mark_revoked: Statement
    encode: Callable[[list[str]], object]  # the ids as that one parameter's value

    @classmethod
    def build(cls, in_ids: ColumnElement[bool], encode: Callable[[list[str]], object]) -> IdLists:
        """From the backend's `session id IN (ids)` clause and its encoding of `ids`."""

        def matching(*, only: bool, keep: bool) -> Statement:
            query = select(_S.id).where(_S.user_id == bindparam("user_id"))
            query = query.where(in_ids) if only else query.where(_S.revoked_at.is_(None))
            if keep:
                query = query.where(_S.id != bindparam("keep"))
            return Statement(query)

        return cls(
            matching={
                (only, keep): matching(only=only, keep=keep)
                for only in (False, True)
                for keep in (False, True)
            },
            mark_revoked=Statement(
                update(SESSIONS)
                .where(in_ids, _S.revoked_at.is_(None))
                .values(revoked_at=bindparam("now"), revoked_reason=bindparam("reason"))
            ),
            encode=encode,
        )


def _family(row: tuple[object, ...]) -> RefreshFamily:
    end = _TOKEN_WIDTH + _SESSION_WIDTH
    return RefreshFamily(
        token=RefreshTokenRow(*row[:_TOKEN_WIDTH]),  # type: ignore[arg-type]
        session=SessionRow(*row[_TOKEN_WIDTH:end]),  # type: ignore[arg-type]
        username=cast(str, row[end]),
        user_active=cast(bool, row[end + 1]),
        user_scopes=cast(str, row[end + 2]),
        user_credential_version=cast(int, row[end + 3]),
    )


R = TypeVar("R", bound=Runner)


class SqlSessions(Generic[R]):
    """SessionRepository but `open` and `rotate`, over a backend's runner; the subclass
    sets `id_lists` and writes those two."""

    __slots__ = ("_db",)
    id_lists: ClassVar[IdLists]

    def __init__(self, db: R) -> None:
        self._db = db

    async def find_family(self, token_hash: str) -> RefreshFamily | None:
        """The token row, its session and its user's state in one SELECT, or None."""
        rows = await self._db.rows(_FIND_FAMILY, {"hash": token_hash})
        return _family(tuple(rows[0])) if rows else None

    async def list_open(self, user_id: str, now: datetime) -> list[SessionRow]:
        """The user's open sessions, newest first."""
        rows = await self._db.rows(_LIST_OPEN, {"user_id": user_id, "now": now})
        return [SessionRow(*row) for row in rows]

    async def count_open(self, user_id: str, now: datetime) -> int:
        """How many of the user's sessions can still be refreshed."""
        rows = await self._db.rows(_COUNT_OPEN, {"user_id": user_id, "now": now})
        return int(rows[0][0])

    async def matching_ids(
        self, *, user_id: str, only: list[str] | None = None, keep: str | None = None
    ) -> list[str]:
        """The user's sessions to revoke (other users' ids never match)."""
        lists = self.id_lists
        statement = lists.matching[(only is not None, keep is not None)]
        params = {"user_id": user_id, "ids": lists.encode(only or []), "keep": keep}
        return [row[0] for row in await self._db.rows(statement, params)]

    async def mark_revoked(self, session_ids: list[str], *, now: datetime, reason: str) -> None:
        """Record the revocation durably (the first reason wins)."""
        if session_ids:
            lists = self.id_lists
            params = {"ids": lists.encode(session_ids), "now": now, "reason": reason}
            await self._db.rows(lists.mark_revoked, params)

    async def unrevoked_scopes(self, user_id: str) -> list[tuple[str, str]]:
        """(id, scope) of the user's sessions not revoked, expired ones too."""
        rows = await self._db.rows(_UNREVOKED_SCOPES, {"user_id": user_id})
        return [(row[0], row[1]) for row in rows]

    async def purge_ended(self, *, before: datetime) -> int:
        """Delete sessions (their refresh tokens cascade) revoked or past their absolute
        expiry before `before`."""
        return await purge_all(self._db, _PURGE_ENDED, {"before": before})

"""Sessions and refresh tokens on PostgreSQL, the login and refresh writes one statement each.

Each hot write is a single data-modifying statement (CTEs), atomic on its own, so outside
a transaction it needs no BEGIN/COMMIT round trips: one asyncpg round trip per call.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import cast

from sqlalchemy import String, Table, any_, bindparam, exists, func, insert, select, update
from sqlalchemy.dialects import postgresql

from auth_service.db.runner import Runner
from auth_service.db.statements import Statement
from auth_service.models import RefreshToken, Session, User
from auth_service.repositories.rows import RefreshFamily, RefreshTokenRow, SessionRow

__all__ = ["PgSessions"]

_SESSIONS = cast(Table, Session.__table__)
_TOKENS = cast(Table, RefreshToken.__table__)
_USERS = cast(Table, User.__table__)
_S, _T, _U = _SESSIONS.c, _TOKENS.c, _USERS.c

_SESSION_COLUMNS = tuple(_S[field.name] for field in fields(SessionRow))
_TOKEN_COLUMNS = tuple(_T[field.name] for field in fields(RefreshTokenRow))
_TOKEN_WIDTH, _SESSION_WIDTH = len(_TOKEN_COLUMNS), len(_SESSION_COLUMNS)

_FIND_FAMILY = Statement(
    select(*_TOKEN_COLUMNS, *_SESSION_COLUMNS, _U.username, _U.is_active, _U.scopes)
    .add_columns(_U.credential_version)
    .join_from(_TOKENS, _SESSIONS, _S.id == _T.session_id)
    .join(_USERS, _U.id == _S.user_id)
    .where(_T.token_hash == bindparam("hash"))
)

# A token is claimed only while its session is open and its user active, checked in the
# claiming statement itself: a disable or revocation committed after the family was read
# still stops the rotation. Then the successor is inserted and the session touched only
# for a claim that matched.
_FAMILY_OPEN = exists().where(
    _S.id == _T.session_id, _S.revoked_at.is_(None), _U.id == _S.user_id, _U.is_active.is_(True)
)
_CLAIMED = (
    update(_TOKENS)
    .where(_T.token_hash == bindparam("hash"), _T.used_at.is_(None), _FAMILY_OPEN)
    .values(used_at=bindparam("now"), sealed_successor=bindparam("sealed"))
    .returning(_T.session_id)
    .cte("claimed")
)
_ROTATE = Statement(
    select(func.count())
    .select_from(_CLAIMED)
    .add_cte(
        insert(_TOKENS)
        .from_select(
            ["token_hash", "session_id", "issued_at"],
            select(
                bindparam("successor", type_=_T.token_hash.type),
                _CLAIMED.c.session_id,
                bindparam("now", type_=_T.issued_at.type),
            ),
        )
        .cte("successor"),
        update(_SESSIONS)
        .where(_S.id.in_(select(_CLAIMED.c.session_id)))
        .values(
            last_used_at=bindparam("now"),
            idle_expires_at=bindparam("idle"),
            last_ip=bindparam("ip"),
            last_user_agent=bindparam("agent"),
        )
        .cte("touched"),
    )
)

# Login: the session, only while its user is active at the credential version read with
# the hash, and its first token, in one statement; the count says if it opened. The user
# row is read FOR SHARE: a password change or disable holding it makes the login wait for
# its commit, and READ COMMITTED re-checks the condition on the new row, so the login fails.
_OPENED = (
    insert(_SESSIONS)
    .from_select(
        [column.name for column in _SESSION_COLUMNS],
        select(
            *(
                _U.id if column.name == "user_id" else bindparam(column.name, type_=column.type)
                for column in _SESSION_COLUMNS
            )
        )
        .where(
            _U.id == bindparam("user_id"),
            _U.is_active.is_(True),
            _U.credential_version == bindparam("credential_version"),
            # The code flow opens a session only while the user's scopes are unchanged
            # since the code was issued (None: no such condition).
            func.coalesce(bindparam("expected_scopes", type_=_U.scopes.type), _U.scopes)
            == _U.scopes,
        )
        .with_for_update(read=True),
    )
    .returning(_S.id)
    .cte("opened")
)
_OPEN = Statement(
    select(func.count())
    .select_from(_OPENED)
    .add_cte(
        insert(_TOKENS)
        .from_select(
            ["token_hash", "session_id", "issued_at"],
            select(
                bindparam("token_hash", type_=_T.token_hash.type),
                _OPENED.c.id,
                bindparam("now", type_=_T.issued_at.type),
            ),
        )
        .cte("first_token")
    )
)


def _open_at(now_param: str) -> list[object]:
    return [
        _S.user_id == bindparam("user_id"),
        _S.revoked_at.is_(None),
        _S.idle_expires_at > bindparam(now_param),
        _S.absolute_expires_at > bindparam(now_param),
    ]


_LIST_OPEN = Statement(
    select(*_SESSION_COLUMNS)
    .where(*_open_at("now"))  # type: ignore[arg-type]
    .order_by(_S.created_at.desc(), _S.id)
)
_COUNT_OPEN = Statement(
    select(func.count()).select_from(_SESSIONS).where(*_open_at("now"))  # type: ignore[arg-type]
)
_UNREVOKED_SCOPES = Statement(
    select(_S.id, _S.scope).where(_S.user_id == bindparam("user_id"), _S.revoked_at.is_(None))
)


# A list of ids is one array parameter (`= ANY($1)`), so each statement compiles once.
_IN_IDS = _S.id == any_(bindparam("ids", type_=postgresql.ARRAY(String)))


def _ids(ids: list[str]) -> list[str]:
    return ids


def _matching(*, only: bool, keep: bool) -> Statement:
    query = select(_S.id).where(_S.user_id == bindparam("user_id"))
    query = query.where(_IN_IDS) if only else query.where(_S.revoked_at.is_(None))
    if keep:
        query = query.where(_S.id != bindparam("keep"))
    return Statement(query)


_MATCHING = {
    (only, keep): _matching(only=only, keep=keep)
    for only in (False, True)
    for keep in (False, True)
}
_MARK_REVOKED = Statement(
    update(_SESSIONS)
    .where(_IN_IDS, _S.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"), revoked_reason=bindparam("reason"))
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


class PgSessions:
    """SessionRepository on PostgreSQL."""

    __slots__ = ("_db",)

    def __init__(self, db: Runner) -> None:
        self._db = db

    async def open(
        self,
        record: SessionRow,
        *,
        token_hash: str,
        credential_version: int,
        expected_scopes: str | None = None,
    ) -> bool:
        """Insert the session and its first token if the user is still current (one statement)."""
        params: dict[str, object] = {c.name: getattr(record, c.name) for c in _SESSION_COLUMNS}
        params.update(
            credential_version=credential_version,
            token_hash=token_hash,
            now=record.created_at,
            expected_scopes=expected_scopes,
        )
        rows = await self._db.rows(_OPEN, params)
        return bool(rows[0][0] == 1)

    async def find_family(self, token_hash: str) -> RefreshFamily | None:
        """The token row, its session and its user's state in one SELECT, or None."""
        rows = await self._db.rows(_FIND_FAMILY, {"hash": token_hash})
        return _family(tuple(rows[0])) if rows else None

    async def rotate(
        self,
        token_hash: str,
        *,
        now: datetime,
        sealed_successor: str,
        successor_hash: str,
        session_id: str,
        idle_expires_at: datetime,
        ip: str | None,
        user_agent: str | None,
    ) -> bool:
        """Claim, insert the successor and touch the session: one statement."""
        params = {
            "hash": token_hash,
            "now": now,
            "sealed": sealed_successor,
            "successor": successor_hash,
            "idle": idle_expires_at,
            "ip": ip,
            "agent": user_agent,
        }
        rows = await self._db.rows(_ROTATE, params)
        return bool(rows[0][0] == 1)

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
        statement = _MATCHING[(only is not None, keep is not None)]
        params = {"user_id": user_id, "ids": _ids(only or []), "keep": keep}
        return [row[0] for row in await self._db.rows(statement, params)]

    async def mark_revoked(self, session_ids: list[str], *, now: datetime, reason: str) -> None:
        """Record the revocation durably (the first reason wins)."""
        if session_ids:
            params = {"ids": _ids(session_ids), "now": now, "reason": reason}
            await self._db.rows(_MARK_REVOKED, params)

    async def unrevoked_scopes(self, user_id: str) -> list[tuple[str, str]]:
        """(id, scope) of the user's sessions not revoked, expired ones too."""
        rows = await self._db.rows(_UNREVOKED_SCOPES, {"user_id": user_id})
        return [(row[0], row[1]) for row in rows]

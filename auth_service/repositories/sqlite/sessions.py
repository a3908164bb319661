"""Sessions and refresh tokens on SQLite, every statement on the worker thread.

A login or refresh write is one worker job: its statements run in the worker's thread as
one transaction, committed with whatever else was queued (db/sqlite_worker.py).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import fields
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, exists, func, insert, literal_column, select, update

from auth_service.db.sqlite_worker import SQLiteWorker, WorkerSession
from auth_service.db.statements import Statement
from auth_service.models import RefreshToken, Session, User
from auth_service.repositories.rows import RefreshFamily, RefreshTokenRow, SessionRow

__all__ = ["SqliteSessions"]

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
# still stops the rotation.
_FAMILY_OPEN = exists().where(
    _S.id == _T.session_id, _S.revoked_at.is_(None), _U.id == _S.user_id, _U.is_active.is_(True)
)
_CLAIM = Statement(
    update(_TOKENS)
    .where(_T.token_hash == bindparam("hash"), _T.used_at.is_(None), _FAMILY_OPEN)
    .values(used_at=bindparam("now"), sealed_successor=bindparam("sealed"))
    .returning(_T.token_hash)
)
_INSERT_TOKEN = Statement(insert(_TOKENS), ["token_hash", "session_id", "issued_at"])
_TOUCH = Statement(
    update(_SESSIONS)
    .where(_S.id == bindparam("sid"))
    .values(
        last_used_at=bindparam("now"),
        idle_expires_at=bindparam("idle"),
        last_ip=bindparam("ip"),
        last_user_agent=bindparam("agent"),
    )
)
# The session only while its user is active at the credential version read with the hash
# (SQLite has one writer: a password change or disable is either committed or not begun).
_OPEN_IF_CURRENT = Statement(
    insert(_SESSIONS)
    .from_select(
        [column.name for column in _SESSION_COLUMNS],
        select(
            *(
                _U.id if column.name == "user_id" else bindparam(column.name, type_=column.type)
                for column in _SESSION_COLUMNS
            )
        ).where(
            _U.id == bindparam("user_id"),
            _U.is_active.is_(True),
            _U.credential_version == bindparam("credential_version"),
            # The code flow opens a session only while the user's scopes are unchanged
            # since the code was issued (None: no such condition).
            func.coalesce(bindparam("expected_scopes", type_=_U.scopes.type), _U.scopes)
            == _U.scopes,
        ),
    )
    .returning(_S.id)
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


# A list of ids is one JSON parameter (`IN (SELECT value FROM json_each(?))`), so each
# statement compiles once.
_IN_IDS = _S.id.in_(select(literal_column("value")).select_from(func.json_each(bindparam("ids"))))


def _ids(ids: list[str]) -> str:
    return json.dumps(ids)


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


class SqliteSessions:
    """SessionRepository on SQLite."""

    __slots__ = ("_db",)

    def __init__(self, db: SQLiteWorker | WorkerSession) -> None:
        self._db = db

    async def open(
        self,
        record: SessionRow,
        *,
        token_hash: str,
        credential_version: int,
        expected_scopes: str | None = None,
    ) -> bool:
        """Insert the session and its first token if the user is still current (one job)."""
        values: dict[str, object] = {c.name: getattr(record, c.name) for c in _SESSION_COLUMNS}
        values["credential_version"] = credential_version
        values["expected_scopes"] = expected_scopes
        token = {"token_hash": token_hash, "session_id": record.id, "issued_at": record.created_at}
        open_if_current = _OPEN_IF_CURRENT.compiled(self._db.dialect)
        insert_token = _INSERT_TOKEN.compiled(self._db.dialect)

        def insert(connection: sqlite3.Connection) -> bool:
            if not open_if_current.run(connection, values):
                return False
            insert_token.run(connection, token)
            return True

        return await self._db.transaction(insert)

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
        """Claim, insert the successor and touch the session: one job."""
        claim = {"hash": token_hash, "now": now, "sealed": sealed_successor}
        successor = {"token_hash": successor_hash, "session_id": session_id, "issued_at": now}
        touch = {
            "sid": session_id,
            "now": now,
            "idle": idle_expires_at,
            "ip": ip,
            "agent": user_agent,
        }
        claim_token = _CLAIM.compiled(self._db.dialect)
        insert_token = _INSERT_TOKEN.compiled(self._db.dialect)
        touch_session = _TOUCH.compiled(self._db.dialect)

        def rotate(connection: sqlite3.Connection) -> bool:
            if not claim_token.run(connection, claim):
                return False
            insert_token.run(connection, successor)
            touch_session.run(connection, touch)
            return True

        return await self._db.transaction(rotate)

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

"""Sessions and refresh tokens on SQLite, every statement on the worker thread.

A login or refresh write is one worker job: its statements run in the worker's thread as
one transaction, committed with whatever else was queued (db/sqlite_worker.py). The reads
and revocation writes are shared with PostgreSQL (repositories/sql_sessions.py).
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime

from sqlalchemy import bindparam, func, insert, literal_column, select

from auth_service.db.sqlite_worker import SQLiteWorker, WorkerSession
from auth_service.db.statements import Statement
from auth_service.repositories.rows import SessionRow
from auth_service.repositories.sql_sessions import (
    SESSION_COLUMNS,
    SESSIONS,
    TOKENS,
    IdLists,
    SqlSessions,
    claim_token,
    open_session_if_current,
    touch_session,
)

__all__ = ["SqliteSessions"]

_CLAIM = Statement(claim_token())
_INSERT_TOKEN = Statement(insert(TOKENS), ["token_hash", "session_id", "issued_at"])
_TOUCH = Statement(touch_session(SESSIONS.c.id == bindparam("sid")))
# No row lock needed: SQLite has one writer, so a password change or disable is either
# committed or not begun.
_OPEN_IF_CURRENT = Statement(open_session_if_current(share_lock_user=False))


def _ids(ids: list[str]) -> str:
    return json.dumps(ids)


# A list of ids is one JSON parameter (`IN (SELECT value FROM json_each(?))`).
_ID_LISTS = IdLists.build(
    SESSIONS.c.id.in_(
        select(literal_column("value")).select_from(func.json_each(bindparam("ids")))
    ),
    _ids,
)


class SqliteSessions(SqlSessions[SQLiteWorker | WorkerSession]):
    """SessionRepository on SQLite."""

    __slots__ = ()
    id_lists = _ID_LISTS

    async def open(
        self,
        record: SessionRow,
        *,
        token_hash: str,
        credential_version: int,
        expected_scopes: str | None = None,
    ) -> bool:
        """Insert the session and its first token if the user is still current (one job)."""
        values: dict[str, object] = {c.name: getattr(record, c.name) for c in SESSION_COLUMNS}
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
        claiming = _CLAIM.compiled(self._db.dialect)
        inserting = _INSERT_TOKEN.compiled(self._db.dialect)
        touching = _TOUCH.compiled(self._db.dialect)

        def rotate(connection: sqlite3.Connection) -> bool:
            if not claiming.run(connection, claim):
                return False
            inserting.run(connection, successor)
            touching.run(connection, touch)
            return True

        return await self._db.transaction(rotate)

"""Sessions and refresh tokens on PostgreSQL, the login and refresh writes one statement each.

Each hot write is a single data-modifying statement (CTEs), atomic on its own, so outside
a transaction it needs no BEGIN/COMMIT round trips: one asyncpg round trip per call. The
reads and revocation writes are shared with SQLite (repositories/sql_sessions.py).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, any_, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql

from auth_service.db.runner import Runner
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

__all__ = ["PgSessions"]

_T = TOKENS.c

# The successor is inserted and the session touched only for a claim that matched.
_CLAIMED = claim_token().cte("claimed")
_ROTATE = Statement(
    select(func.count())
    .select_from(_CLAIMED)
    .add_cte(
        insert(TOKENS)
        .from_select(
            ["token_hash", "session_id", "issued_at"],
            select(
                bindparam("successor", type_=_T.token_hash.type),
                _CLAIMED.c.session_id,
                bindparam("now", type_=_T.issued_at.type),
            ),
        )
        .cte("successor"),
        touch_session(SESSIONS.c.id.in_(select(_CLAIMED.c.session_id))).cte("touched"),
    )
)

# Login: the session (its user row read FOR SHARE, so READ COMMITTED re-checks a
# concurrent password change or disable after it commits) and its first token, in one
# statement; the count says if it opened.
_OPENED = open_session_if_current(share_lock_user=True).cte("opened")
_OPEN = Statement(
    select(func.count())
    .select_from(_OPENED)
    .add_cte(
        insert(TOKENS)
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


def _ids(ids: list[str]) -> list[str]:
    return ids


# A list of ids is one array parameter (`= ANY($1)`).
_ID_LISTS = IdLists.build(
    SESSIONS.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(String))), _ids
)


class PgSessions(SqlSessions[Runner]):
    """SessionRepository on PostgreSQL."""

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
        """Insert the session and its first token if the user is still current (one statement)."""
        params: dict[str, object] = {c.name: getattr(record, c.name) for c in SESSION_COLUMNS}
        params.update(
            credential_version=credential_version,
            token_hash=token_hash,
            now=record.created_at,
            expected_scopes=expected_scopes,
        )
        rows = await self._db.rows(_OPEN, params)
        return bool(rows[0][0] == 1)

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

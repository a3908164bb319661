"""Sessions, refresh-token hashes and revoked access tokens in SQL (the durable truth).

The login and refresh statements are SQLAlchemy Core on the tables, built once, and read
into plain frozen records. They go to the driver directly: on PostgreSQL to asyncpg on a
PgConnection, each write a single autocommitted statement (PgStatement); on SQLite to the
SQLiteWorker, each write transaction one job (committed with whatever else was queued).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, fields
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.sql.dml import Insert

from auth_service.db.hot import HotConnection, HotLookup, PgConnection, PgStatement
from auth_service.db.statements import Statement
from auth_service.models import RefreshToken, RevokedAccessToken, Session, User

__all__ = [
    "Executor",
    "RefreshFamily",
    "RefreshTokenRow",
    "SessionRow",
    "find_refresh_family",
    "list_open_sessions",
    "mark_sessions_revoked",
    "matching_session_ids",
    "open_session",
    "recent_revocations",
    "record_revoked_access_token",
    "rotate_refresh_token",
    "unrevoked_session_scopes",
]

_SESSIONS = cast(Table, Session.__table__)
_TOKENS = cast(Table, RefreshToken.__table__)
_USERS = cast(Table, User.__table__)


@dataclass(frozen=True)
class SessionRow:
    """A session (the `sid` of its access tokens), as stored."""

    id: str
    user_id: str
    client_id: str
    scope: str
    created_at: datetime
    last_used_at: datetime
    last_ip: str | None
    last_user_agent: str | None
    idle_expires_at: datetime
    absolute_expires_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None


@dataclass(frozen=True)
class RefreshTokenRow:
    """An issued refresh token, known by its hash."""

    token_hash: str
    session_id: str
    issued_at: datetime
    used_at: datetime | None
    sealed_successor: str | None


@dataclass(frozen=True)
class RefreshFamily:
    """A refresh token, its session, and the state of the session's user."""

    token: RefreshTokenRow
    session: SessionRow
    username: str
    user_active: bool
    user_scopes: str
    user_credential_version: int


_SESSION_COLUMNS = tuple(_SESSIONS.c[field.name] for field in fields(SessionRow))
_TOKEN_COLUMNS = tuple(_TOKENS.c[field.name] for field in fields(RefreshTokenRow))
_TOKEN_WIDTH, _SESSION_WIDTH = len(_TOKEN_COLUMNS), len(_SESSION_COLUMNS)

# The hot statements are built once: values arrive as execute() parameters, so each call
# skips statement construction and reuses the memoized cache key and compiled form.
_INSERT_TOKEN = insert(_TOKENS)
_FIND_FAMILY = (
    select(
        *_TOKEN_COLUMNS,
        *_SESSION_COLUMNS,
        _USERS.c.username,
        _USERS.c.is_active,
        _USERS.c.scopes,
        _USERS.c.credential_version,
    )
    .join_from(_TOKENS, _SESSIONS, _SESSIONS.c.id == _TOKENS.c.session_id)
    .join(_USERS, _USERS.c.id == _SESSIONS.c.user_id)
    .where(_TOKENS.c.token_hash == bindparam("hash"))
)
# A token is claimed only while its session is open and its user active, checked in the
# claiming statement itself: a disable or revocation committed after the family was read
# still stops the rotation.
_FAMILY_OPEN = exists().where(
    _SESSIONS.c.id == _TOKENS.c.session_id,
    _SESSIONS.c.revoked_at.is_(None),
    _USERS.c.id == _SESSIONS.c.user_id,
    _USERS.c.is_active.is_(True),
)
_CLAIM = (
    update(_TOKENS)
    .where(_TOKENS.c.token_hash == bindparam("hash"), _TOKENS.c.used_at.is_(None), _FAMILY_OPEN)
    .values(used_at=bindparam("now"), sealed_successor=bindparam("sealed"))
)
_TOUCH = (
    update(_SESSIONS)
    .where(_SESSIONS.c.id == bindparam("sid"))
    .values(
        last_used_at=bindparam("now"),
        idle_expires_at=bindparam("idle"),
        last_ip=bindparam("ip"),
        last_user_agent=bindparam("agent"),
    )
)

# PostgreSQL runs each hot write as one statement (data-modifying CTEs), atomic on its own,
# so it needs no BEGIN/COMMIT round trips. Rotation: claim the token (the compare-and-set),
# then insert the successor and touch the session only for a claim that matched.
_CLAIMED = _CLAIM.returning(_TOKENS.c.session_id).cte("claimed")
_PG_ROTATE = (
    select(func.count())
    .select_from(_CLAIMED)
    .add_cte(
        insert(_TOKENS)
        .from_select(
            ["token_hash", "session_id", "issued_at"],
            select(
                bindparam("successor", type_=_TOKENS.c.token_hash.type),
                _CLAIMED.c.session_id,
                bindparam("now", type_=_TOKENS.c.issued_at.type),
            ),
        )
        .cte("successor"),
        update(_SESSIONS)
        .where(_SESSIONS.c.id.in_(select(_CLAIMED.c.session_id)))
        .values(
            last_used_at=bindparam("now"),
            idle_expires_at=bindparam("idle"),
            last_ip=bindparam("ip"),
            last_user_agent=bindparam("agent"),
        )
        .cte("touched"),
    )
)


def _open_session(*, lock_user: bool) -> Insert:
    """INSERT the session only while its user is active and the credential version read at
    authentication time is still current (a password change or disable bumps it).

    On PostgreSQL the user row is read FOR SHARE: a password change or disable holding it
    makes the login wait for its commit, and the condition is then checked again on the
    new row (READ COMMITTED re-checks locked rows), so the login fails."""
    source = select(
        *(
            _USERS.c.id if column.name == "user_id" else bindparam(column.name, type_=column.type)
            for column in _SESSION_COLUMNS
        )
    ).where(
        _USERS.c.id == bindparam("user_id"),
        _USERS.c.is_active.is_(True),
        _USERS.c.credential_version == bindparam("credential_version"),
    )
    if lock_user:
        source = source.with_for_update(read=True)
    return (
        insert(_SESSIONS)
        .from_select([column.name for column in _SESSION_COLUMNS], source)
        .returning(_SESSIONS.c.id)
    )


# Login: the session and its first token in one statement; the count says if it opened.
_OPENED = _open_session(lock_user=True).cte("opened")
_PG_OPEN = (
    select(func.count())
    .select_from(_OPENED)
    .add_cte(
        insert(_TOKENS)
        .from_select(
            ["token_hash", "session_id", "issued_at"],
            select(
                bindparam("token_hash", type_=_TOKENS.c.token_hash.type),
                _OPENED.c.id,
                bindparam("now", type_=_TOKENS.c.issued_at.type),
            ),
        )
        .cte("first_token")
    )
)

_PG_ROTATE_RUN = PgStatement(_PG_ROTATE)
_PG_OPEN_RUN = PgStatement(_PG_OPEN)

# SQLite runs the hot statements on the SQLiteWorker: the read as one job, each write
# transaction (its statements in the worker's thread) as one more.
_FIND_FAMILY_LOOKUP = HotLookup(_FIND_FAMILY)
_SQLITE_CLAIM = Statement(_CLAIM.returning(_TOKENS.c.token_hash))
_SQLITE_INSERT_TOKEN = Statement(_INSERT_TOKEN, ["token_hash", "session_id", "issued_at"])
_SQLITE_OPEN_SESSION = Statement(_open_session(lock_user=False))
_SQLITE_TOUCH = Statement(_TOUCH)

# What runs these: hot_connection() on the hot paths, a Core connection or ORM session
# elsewhere (tests read back that way).
Executor = HotConnection | AsyncConnection | AsyncSession


async def open_session(
    db: HotConnection, record: SessionRow, *, token_hash: str, credential_version: int
) -> bool:
    """Insert a session with its first refresh token, atomically, if the user is still
    active at `credential_version`; False (nothing written) if not. The caller commits.

    `db` comes from hot_connection()."""
    values = {column.name: getattr(record, column.name) for column in _SESSION_COLUMNS}
    values["credential_version"] = credential_version
    params = {**values, "token_hash": token_hash, "now": record.created_at}
    if isinstance(db, PgConnection):
        opened = await _PG_OPEN_RUN.rows(db, params)
        return bool(opened[0][0] == 1)
    open_if_current = _SQLITE_OPEN_SESSION.compiled(db.dialect)
    insert_token = _SQLITE_INSERT_TOKEN.compiled(db.dialect)
    token = {"token_hash": token_hash, "session_id": record.id, "issued_at": record.created_at}

    def insert(connection: sqlite3.Connection) -> bool:
        if not open_if_current.run(connection, values):
            return False
        insert_token.run(connection, token)
        return True

    return await db.transaction(insert)


async def find_refresh_family(db: Executor, token_hash: str) -> RefreshFamily | None:
    """The token row, its session and its user's state in one SELECT, or None."""
    row = await _FIND_FAMILY_LOOKUP.first(db, {"hash": token_hash})
    if row is None:
        return None
    end = _TOKEN_WIDTH + _SESSION_WIDTH
    return RefreshFamily(
        token=RefreshTokenRow(*row[:_TOKEN_WIDTH]),
        session=SessionRow(*row[_TOKEN_WIDTH:end]),
        username=row[end],
        user_active=row[end + 1],
        user_scopes=row[end + 2],
        user_credential_version=row[end + 3],
    )


async def rotate_refresh_token(
    db: HotConnection,
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
    """Claim the token, the one atomic compare-and-set that makes it single-use; if this
    call won, record its successor and the session's use. False if another rotation came
    first. The caller commits. `db` comes from hot_connection(), as for open_session."""
    touch = {"now": now, "idle": idle_expires_at, "ip": ip, "agent": user_agent}
    claim = {"hash": token_hash, "now": now, "sealed": sealed_successor}
    if isinstance(db, PgConnection):
        found = await _PG_ROTATE_RUN.rows(db, {**claim, "successor": successor_hash, **touch})
        return bool(found[0][0] == 1)
    successor = {"token_hash": successor_hash, "session_id": session_id, "issued_at": now}
    claim_token = _SQLITE_CLAIM.compiled(db.dialect)
    insert_token = _SQLITE_INSERT_TOKEN.compiled(db.dialect)
    touch_session = _SQLITE_TOUCH.compiled(db.dialect)

    def rotate(connection: sqlite3.Connection) -> bool:
        if not claim_token.run(connection, claim):
            return False
        insert_token.run(connection, successor)
        touch_session.run(connection, {"sid": session_id, **touch})
        return True

    return await db.transaction(rotate)


async def list_open_sessions(session: AsyncSession, user_id: str, now: datetime) -> list[Session]:
    """The user's sessions that are neither revoked nor expired, newest first."""
    result = await session.execute(
        select(Session)
        .where(
            Session.user_id == user_id,
            Session.revoked_at.is_(None),
            Session.idle_expires_at > now,
            Session.absolute_expires_at > now,
        )
        .order_by(Session.created_at.desc(), Session.id)
    )
    return list(result.scalars())


async def matching_session_ids(
    session: AsyncSession,
    *,
    user_id: str,
    only: list[str] | None = None,
    keep: str | None = None,
) -> list[str]:
    """The user's sessions to revoke: all open ones, `only` these, or all open but `keep`.

    With `only`, sessions revoked before match too, so a retried revocation is pushed to
    the shared store again; other users' ids never match.
    """
    query = select(Session.id).where(Session.user_id == user_id)
    if only is not None:
        query = query.where(Session.id.in_(only))
    else:
        query = query.where(Session.revoked_at.is_(None))
    if keep is not None:
        query = query.where(Session.id != keep)
    return list((await session.execute(query)).scalars())


async def mark_sessions_revoked(
    session: AsyncSession, session_ids: list[str], *, now: datetime, reason: str
) -> None:
    """Record the revocation durably (the first reason wins)."""
    if session_ids:
        await session.execute(
            update(Session)
            .where(Session.id.in_(session_ids), Session.revoked_at.is_(None))
            .values(revoked_at=now, revoked_reason=reason)
        )


async def record_revoked_access_token(
    session: AsyncSession, *, jti: str, expires_at: datetime, now: datetime
) -> None:
    """Remember a revoked access token until it expires (idempotent)."""
    if await session.get(RevokedAccessToken, jti) is not None:
        return
    try:
        async with session.begin_nested():
            session.add(RevokedAccessToken(jti=jti, expires_at=expires_at, revoked_at=now))
    except IntegrityError:
        pass  # revoked concurrently: same outcome


async def recent_revocations(
    session: AsyncSession, *, since: datetime
) -> tuple[list[tuple[str, datetime]], list[tuple[str, datetime]], list[tuple[str, int, datetime]]]:
    """What the denylist must hold: sessions revoked since `since`, unexpired revoked tokens,
    and users disabled since `since` (with the credential version their tokens must reach,
    and when they were disabled)."""
    sessions = await session.execute(
        select(Session.id, Session.revoked_at).where(Session.revoked_at > since)
    )
    tokens = await session.execute(
        select(RevokedAccessToken.jti, RevokedAccessToken.expires_at).where(
            RevokedAccessToken.expires_at > since
        )
    )
    users = await session.execute(
        select(User.id, User.credential_version, User.tokens_valid_after).where(
            User.tokens_valid_after > since
        )
    )
    return (
        [(sid, when) for sid, when in sessions.all() if when is not None],
        [(jti, when) for jti, when in tokens.all()],
        [(uid, version, when) for uid, version, when in users.all() if when is not None],
    )


async def unrevoked_session_scopes(session: AsyncSession, user_id: str) -> list[tuple[str, str]]:
    """(id, scope) of the user's sessions not revoked, expired ones too: their last access
    tokens may still be live."""
    result = await session.execute(
        select(Session.id, Session.scope).where(
            Session.user_id == user_id, Session.revoked_at.is_(None)
        )
    )
    return [(sid, scope) for sid, scope in result.all()]

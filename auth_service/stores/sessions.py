"""Sessions, refresh-token hashes and revoked access tokens in SQL (the durable truth)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from auth_service.models import RefreshToken, RevokedAccessToken, Session, User

__all__ = [
    "add_refresh_token",
    "add_session",
    "claim_refresh_token",
    "find_refresh_token",
    "get_session",
    "list_open_sessions",
    "mark_sessions_revoked",
    "matching_session_ids",
    "recent_revocations",
    "record_revoked_access_token",
    "touch_session",
]


async def add_session(session: AsyncSession, record: Session) -> None:
    """Insert a new session row."""
    session.add(record)
    await session.flush()


async def add_refresh_token(
    session: AsyncSession, *, token_hash: str, session_id: str, now: datetime
) -> None:
    """Record an issued refresh token by its hash."""
    session.add(RefreshToken(token_hash=token_hash, session_id=session_id, issued_at=now))
    await session.flush()


async def find_refresh_token(
    session: AsyncSession, token_hash: str
) -> tuple[RefreshToken, Session] | None:
    """The token row and its session, or None for a token we never issued."""
    result = await session.execute(
        select(RefreshToken, Session)
        .join(Session, Session.id == RefreshToken.session_id)
        .where(RefreshToken.token_hash == token_hash)
    )
    row = result.one_or_none()
    return (row[0], row[1]) if row is not None else None


async def claim_refresh_token(
    session: AsyncSession, token_hash: str, *, now: datetime, sealed_successor: str
) -> bool:
    """Mark the token used if nobody did yet: the one atomic step that makes it single-use."""
    result = await session.execute(
        update(RefreshToken)
        .where(RefreshToken.token_hash == token_hash, RefreshToken.used_at.is_(None))
        .values(used_at=now, sealed_successor=sealed_successor)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def touch_session(
    session: AsyncSession,
    session_id: str,
    *,
    now: datetime,
    idle_expires_at: datetime,
    ip: str | None,
    user_agent: str | None,
) -> None:
    """Record a use of the session and push its idle expiry forward."""
    await session.execute(
        update(Session)
        .where(Session.id == session_id)
        .values(
            last_used_at=now,
            idle_expires_at=idle_expires_at,
            last_ip=ip,
            last_user_agent=user_agent,
        )
    )


async def get_session(session: AsyncSession, session_id: str) -> Session | None:
    """One session by id."""
    return await session.get(Session, session_id)


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
) -> tuple[list[tuple[str, datetime]], list[tuple[str, datetime]], list[tuple[str, datetime]]]:
    """What the denylist must hold: sessions revoked since `since`, unexpired revoked tokens,
    and users whose tokens_valid_after is after `since`."""
    sessions = await session.execute(
        select(Session.id, Session.revoked_at).where(Session.revoked_at > since)
    )
    tokens = await session.execute(
        select(RevokedAccessToken.jti, RevokedAccessToken.expires_at).where(
            RevokedAccessToken.expires_at > since
        )
    )
    users = await session.execute(
        select(User.id, User.tokens_valid_after).where(User.tokens_valid_after > since)
    )
    return (
        [(sid, when) for sid, when in sessions.all() if when is not None],
        [(jti, when) for jti, when in tokens.all()],
        [(uid, when) for uid, when in users.all() if when is not None],
    )

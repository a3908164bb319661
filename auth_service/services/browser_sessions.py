"""Browser single sign-on sessions: started by the login page, ended by RP-initiated logout.

The cookie value is 256 random bits; only its SHA-256 is stored, so a database reader
cannot ride a browser's session. A new login by the same user in the same browser keeps
the session id (the `sid` relying parties hold) but replaces the cookie and auth_time; a
different user's login ends the old session first. Ending a browser session ends every
session (refresh family) opened through it, with its access tokens.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from auth_service.repositories import BrowserSessionFound, BrowserSessionRow, UserRecord
from auth_service.security.authn import AMR_PASSWORD, acr_for
from auth_service.security.tokens import new_token_id
from auth_service.services.context import ServiceContext
from auth_service.services.revocation import deny_sessions

__all__ = ["BrowserLogin", "current_session", "end_browser_session", "hash_cookie", "sign_in"]

_COOKIE_BYTES = 32
_MAX_COOKIE_LENGTH = 128


def hash_cookie(value: str) -> str:
    """The stored form of a browser session cookie."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class BrowserLogin:
    """A completed login: the cookie to set and the session it names."""

    cookie: str
    session: BrowserSessionRow


async def current_session(
    ctx: ServiceContext, cookie: str | None, *, client_id: str
) -> BrowserSessionFound | None:
    """The open session of this browser with its user's state and consent for
    `client_id`, or None (no cookie, unknown, ended, expired, or the user disabled)."""
    if not cookie or len(cookie) > _MAX_COOKIE_LENGTH:
        return None
    found = await ctx.db.browser_sessions.find(hash_cookie(cookie), client_id=client_id)
    if found is None or not found.user_active:
        return None
    session = found.session
    if session.revoked_at is not None or ctx.clock() >= session.expires_at:
        return None
    return found


async def sign_in(
    ctx: ServiceContext,
    user: UserRecord,
    *,
    current: BrowserSessionFound | None,
    lifetime: timedelta,
    amr: Iterable[str] = AMR_PASSWORD,
) -> BrowserLogin:
    """Record a login in this browser (the user's credentials were just checked); its
    `acr` is the class the `amr` methods reach, as for the password grant."""
    now = ctx.clock()
    cookie = secrets.token_urlsafe(_COOKIE_BYTES)
    amr = tuple(amr)
    methods = " ".join(amr)
    acr = acr_for(amr)
    if current is not None and current.session.user_id == user.id:
        renewed = await ctx.db.browser_sessions.reauthenticate(
            current.session.id,
            user_id=user.id,
            token_hash=hash_cookie(cookie),
            auth_time=now,
            amr=methods,
            acr=acr,
            expires_at=now + lifetime,
        )
        if renewed:
            session = BrowserSessionRow(
                id=current.session.id,
                token_hash=hash_cookie(cookie),
                user_id=user.id,
                auth_time=now,
                amr=methods,
                acr=acr,
                created_at=current.session.created_at,
                expires_at=now + lifetime,
            )
            ctx.audit.record("browser_login", user_id=user.id, outcome="reauthenticated")
            return BrowserLogin(cookie, session)
    elif current is not None:
        await end_browser_session(ctx, current.session.id, reason="other_user_login")
    session = BrowserSessionRow(
        id=new_token_id(),
        token_hash=hash_cookie(cookie),
        user_id=user.id,
        auth_time=now,
        amr=methods,
        acr=acr,
        created_at=now,
        expires_at=now + lifetime,
    )
    await ctx.db.browser_sessions.add(session)
    ctx.audit.record("browser_login", user_id=user.id)
    return BrowserLogin(cookie, session)


async def end_browser_sessions_of(ctx: ServiceContext, user_id: str) -> None:
    """End every browser session of a user, so no browser signs in again without the new
    password (the refresh families behind them are ended by the caller's own revocation)."""
    ended = await ctx.db.browser_sessions.revoke_all_of(user_id, now=ctx.clock())
    if ended:
        ctx.audit.record("browser_logout", user_id=user_id, reason="credentials_reset")


async def end_browser_session(ctx: ServiceContext, session_id: str, *, reason: str) -> None:
    """End a browser session and every session opened through it (idempotent)."""
    row = await ctx.db.browser_sessions.get(session_id)
    if row is None:
        return
    await ctx.db.browser_sessions.revoke(session_id, now=ctx.clock())
    linked = await ctx.db.browser_sessions.linked_sessions(session_id)
    if linked:
        # The shared store first, then SQL, then the store again (services/sessions.py).
        await deny_sessions(ctx, linked)
        await ctx.db.sessions.mark_revoked(linked, now=ctx.clock(), reason=reason)
        await deny_sessions(ctx, linked, committed=True)
    ctx.audit.record("browser_logout", user_id=row.user_id, reason=reason)

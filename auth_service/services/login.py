"""The login page's check: the password grant's throttling and timing, then the browser's
single sign-on session for the pending authorization request."""

from __future__ import annotations

from auth_service.errors import InvalidGrant, TooManyAttempts
from auth_service.services.accounts import authenticate
from auth_service.services.authorization import Pending, record_login
from auth_service.services.browser_sessions import BrowserLogin, current_session, sign_in
from auth_service.services.context import ServiceContext

__all__ = ["log_in"]


async def log_in(
    ctx: ServiceContext,
    pending: Pending,
    *,
    username: str,
    password: str,
    ip: str | None,
    cookie: str | None,
) -> BrowserLogin:
    """Check the credentials (InvalidGrant for any failure, TooManyAttempts when
    throttled: the same answers and work as the password grant), then sign the browser
    in and note the login on the pending request."""
    client_id = pending.client.client_id
    try:
        async with ctx.throttler.password_check(username, ip, wrong=InvalidGrant):
            user = await authenticate(ctx, username=username, password=password)
    except TooManyAttempts:
        ctx.audit.record("login", outcome="throttled", client_id=client_id)
        raise
    except InvalidGrant:
        ctx.audit.record("login", outcome="failure", client_id=client_id, reason="bad_credentials")
        raise
    current = await current_session(ctx, cookie, client_id=client_id)
    login = await sign_in(ctx, user, current=current, lifetime=ctx.browser_session_lifetime)
    await record_login(ctx, pending, login.session.id)
    return login

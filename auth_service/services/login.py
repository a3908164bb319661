"""The login page's check: the password grant's throttling and timing, then the browser's
single sign-on session for the pending authorization request."""

from __future__ import annotations

from dataclasses import dataclass

from auth_service.errors import InvalidGrant, TooManyAttempts
from auth_service.services.accounts import authenticate
from auth_service.services.authorization import Pending, record_login
from auth_service.services.browser_mfa import park_second_factor
from auth_service.services.browser_sessions import BrowserLogin, current_session, sign_in
from auth_service.services.context import ServiceContext
from auth_service.services.mfa_login import needs_second_factor

__all__ = ["SecondFactorNeeded", "log_in"]


@dataclass(frozen=True)
class SecondFactorNeeded:
    """The password was right; the browser must now enter a code (services/browser_mfa.py)
    and hold `binding` (in a cookie) until then."""

    binding: str


async def log_in(
    ctx: ServiceContext,
    pending: Pending,
    *,
    username: str,
    password: str,
    ip: str | None,
    cookie: str | None,
) -> BrowserLogin | SecondFactorNeeded:
    """Check the credentials (InvalidGrant for any failure, TooManyAttempts when
    throttled: the same answers and work as the password grant), then sign the browser
    in and note the login on the pending request; for a user with a confirmed factor,
    ask for the code first."""
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
    if needs_second_factor(user):
        return SecondFactorNeeded(await park_second_factor(ctx, pending, user))
    current = await current_session(ctx, cookie, client_id=client_id)
    login = await sign_in(ctx, user, current=current, lifetime=ctx.browser_session_lifetime)
    await record_login(ctx, pending, login.session.id)
    return login

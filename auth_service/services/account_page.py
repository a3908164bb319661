"""The account page's rules: its login round trip and what it shows and does.

A browser without a session is sent through the login page with a pending request of the
account page's own (client id ACCOUNT_CLIENT_ID, stored server side like any other), so
the page never carries a return URL. Every action calls the service that owns its rule
(accounts, mfa, sessions, account_deletion) with claims built from the browser session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from auth_service.repositories import BrowserSessionFound, PendingRequestRow
from auth_service.security.tokens import AccessClaims, new_token_id
from auth_service.services.account_client import ACCOUNT_CLIENT_ID, ACCOUNT_PATH
from auth_service.services.accounts import get_profile
from auth_service.services.authorization import PENDING_LIFETIME, AuthorizationRequest
from auth_service.services.browser_sessions import current_session
from auth_service.services.context import ServiceContext
from auth_service.services.profiles import UserProfile
from auth_service.services.sessions import SessionView, list_sessions, revoke_session_ids

__all__ = [
    "RECENT_LOGIN",
    "AccountView",
    "browser_claims",
    "end_other_sessions",
    "end_session",
    "overview",
    "page_session",
    "recently_authenticated",
    "start_login",
]

RECENT_LOGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class AccountView:
    """What the account page shows."""

    profile: UserProfile
    sessions: list[SessionView]
    has_totp: bool


async def start_login(ctx: ServiceContext) -> str:
    """Park a pending request that returns to the account page after the login; its id."""
    now = ctx.clock()
    request = AuthorizationRequest(
        client_id=ACCOUNT_CLIENT_ID,
        redirect_uri=ctx.tokens.issuer + ACCOUNT_PATH,
        scopes=(),
        state=None,
        nonce=None,
        code_challenge=None,
        prompt=(),
        max_age=None,
        login_hint=None,
        hint_subject=None,
    )
    request_id = new_token_id()
    row = PendingRequestRow(
        id=request_id,
        client_id=ACCOUNT_CLIENT_ID,
        parameters=request.to_json(),
        created_at=now,
        expires_at=now + PENDING_LIFETIME,
    )
    await ctx.db.authorizations.save_request(row)
    return request_id


async def page_session(ctx: ServiceContext, cookie: str | None) -> BrowserSessionFound | None:
    """The browser's open session, or None (then the page asks for a login)."""
    return await current_session(ctx, cookie, client_id=ACCOUNT_CLIENT_ID)


def browser_claims(browser: BrowserSessionFound) -> AccessClaims:
    """The browser session as the claims the account services take (no token behind it:
    `session_id` is the browser session, which no refresh family has)."""
    session = browser.session
    return AccessClaims(
        subject=session.user_id,
        scopes=frozenset(),
        session_id=session.id,
        client_id=ACCOUNT_CLIENT_ID,
        token_id=session.id,
        issued_at=session.auth_time,
        expires_at=session.expires_at,
        credential_version=browser.user_credential_version,
        auth_time=session.auth_time,
        amr=tuple(session.amr.split()),
        acr=session.acr,
    )


def recently_authenticated(ctx: ServiceContext, browser: BrowserSessionFound) -> bool:
    """True when the browser's login was within RECENT_LOGIN (no password re-entry)."""
    return ctx.clock() - browser.session.auth_time <= RECENT_LOGIN


async def overview(ctx: ServiceContext, browser: BrowserSessionFound) -> AccountView | None:
    """The profile, open sessions and factor state; None if the account is gone."""
    user_id = browser.session.user_id
    profile = await get_profile(ctx, user_id)
    if profile is None:
        return None
    sessions = await list_sessions(ctx, user_id, current="")
    factor = await ctx.db.mfa.factor(user_id)
    has_totp = factor is not None and factor.confirmed_at is not None
    return AccountView(profile=profile, sessions=sessions, has_totp=has_totp)


async def end_session(ctx: ServiceContext, browser: BrowserSessionFound, session_id: str) -> None:
    """End one of the user's sessions (someone else's id ends nothing)."""
    user_id = browser.session.user_id
    await revoke_session_ids(ctx, user_id, [session_id[:64]], reason="account_page")


async def end_other_sessions(ctx: ServiceContext, browser: BrowserSessionFound) -> None:
    """End every session of the user not opened through this browser."""
    user_id = browser.session.user_id
    mine = set(await ctx.db.browser_sessions.linked_sessions(browser.session.id))
    records = await ctx.db.sessions.list_open(user_id, ctx.clock())
    others = [r.id for r in records if r.id not in mine]
    if others:
        await revoke_session_ids(ctx, user_id, others, reason="account_page")

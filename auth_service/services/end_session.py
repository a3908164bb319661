"""RP-Initiated Logout 1.0: who asked, where the browser may go afterwards, and ending
the browser session with the sessions opened through it.

The browser is sent back to `post_logout_redirect_uri` only when `id_token_hint` is an ID
token of ours (expired is fine) and the URI is registered, exactly, for the client it was
issued to; otherwise the person confirms on our page and lands on our "signed out" page.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from auth_service.errors import InvalidToken
from auth_service.security.tokens import IdTokenHint
from auth_service.services.browser_sessions import current_session, end_browser_session
from auth_service.services.clients import Client, find_client
from auth_service.services.context import ServiceContext

__all__ = ["LogoutRequest", "check_logout", "log_out"]


@dataclass(frozen=True)
class LogoutRequest:
    """A logout request as checked: the verified hint, its client, and where to go."""

    hint: IdTokenHint | None
    client: Client | None
    location: str | None  # the post-logout redirect (with state), when allowed


async def check_logout(ctx: ServiceContext, params: dict[str, str]) -> LogoutRequest:
    """Verify the hint and the post-logout redirect URI of a logout request."""
    hint = None
    if (raw := params.get("id_token_hint")) is not None:
        try:
            hint = ctx.tokens.verify_id_token_hint(raw)
        except InvalidToken:
            hint = None
    client_id = params.get("client_id")
    if hint is not None and client_id is not None and client_id not in hint.audiences:
        hint = None  # the hint and the client disagree: trust neither for a redirect
    named = client_id or (hint.audiences[0] if hint is not None else None)
    client = await find_client(ctx, named) if named else None
    uri = params.get("post_logout_redirect_uri")
    location = None
    if hint is not None and client is not None and uri in client.post_logout_redirect_uris:
        state = params.get("state")
        assert uri is not None
        location = (
            f"{uri}{'&' if '?' in uri else '?'}{urlencode({'state': state})}" if state else uri
        )
    return LogoutRequest(hint=hint, client=client, location=location)


async def log_out(ctx: ServiceContext, cookie: str | None, hint: IdTokenHint | None) -> None:
    """End this browser's session (and the sessions opened through it); with a hint, also
    the browser session it names if that one is its subject's."""
    found = await current_session(ctx, cookie, client_id="")
    if found is not None and (hint is None or hint.subject == found.session.user_id):
        await end_browser_session(ctx, found.session.id, reason="rp_logout")
    if hint is not None and hint.session_id is not None:
        named = await ctx.db.browser_sessions.get(hint.session_id)
        if named is not None and named.user_id == hint.subject and named.revoked_at is None:
            await end_browser_session(ctx, named.id, reason="rp_logout")

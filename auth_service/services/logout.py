"""Ending sessions: logout (bearer), RFC 7009 revocation, and deleting one's own sessions."""

from __future__ import annotations

from enum import StrEnum

from auth_service.errors import InvalidRequest, InvalidToken, SessionNotFound
from auth_service.security.refresh import MAX_REFRESH_TOKEN_LENGTH, hash_refresh_token
from auth_service.security.tokens import AccessClaims
from auth_service.services.clients import ClientCredentials, authenticate_client
from auth_service.services.context import ServiceContext
from auth_service.services.revocation import deny_token
from auth_service.services.sessions import revoke_session_ids

__all__ = ["LogoutScope", "delete_session", "logout", "revoke"]


class LogoutScope(StrEnum):
    """Which sessions a logout ends (the names GoTrue uses)."""

    LOCAL = "local"  # the session of the presented token
    OTHERS = "others"  # every other session of the user
    GLOBAL = "global"  # every session of the user


async def logout(ctx: ServiceContext, claims: AccessClaims, scope: LogoutScope) -> None:
    """End the caller's session(s); their refresh and access tokens die at once."""
    if scope is LogoutScope.LOCAL:
        await revoke_session_ids(ctx, claims.subject, [claims.session_id], reason="logout")
    elif scope is LogoutScope.OTHERS:
        await revoke_session_ids(
            ctx, claims.subject, None, reason="logout_others", keep=claims.session_id
        )
    else:
        await revoke_session_ids(ctx, claims.subject, None, reason="logout_global")
    ctx.audit.record(
        "logout", user_id=claims.subject, client_id=claims.client_id, reason=scope.value
    )


async def delete_session(ctx: ServiceContext, claims: AccessClaims, session_id: str) -> None:
    """Revoke one of the caller's sessions; someone else's looks exactly like a missing one."""
    if "\x00" in session_id:
        raise SessionNotFound  # no session has one, and PostgreSQL refuses NUL in text
    revoked = await revoke_session_ids(ctx, claims.subject, [session_id], reason="deleted")
    if not revoked:
        raise SessionNotFound


async def revoke(
    ctx: ServiceContext, params: dict[str, str], credentials: ClientCredentials | None
) -> None:
    """RFC 7009: revoke a refresh token (its session) or an access token (its jti).

    Unknown, malformed, expired or foreign tokens are silently ignored, as §2.2 asks. The
    hint only chooses which kind to try first.
    """
    client_id = (await authenticate_client(ctx, credentials)).client_id
    token = params.get("token")
    if not token:
        raise InvalidRequest("the 'token' parameter is required")
    hint = params.get("token_type_hint")
    attempts = [_revoke_refresh_token, _revoke_access_token]
    if hint == "access_token":
        attempts.reverse()
    for attempt in attempts:
        if await attempt(ctx, token, client_id):
            return


async def _revoke_refresh_token(ctx: ServiceContext, token: str, client_id: str) -> bool:
    if len(token) > MAX_REFRESH_TOKEN_LENGTH:
        return False
    found = await ctx.db.sessions.find_family(hash_refresh_token(token))
    if found is None:
        return False
    record = found.session
    if record.client_id == client_id:
        await revoke_session_ids(ctx, record.user_id, [record.id], reason="revoked")
        ctx.audit.record(
            "revoke", user_id=record.user_id, client_id=client_id, reason="refresh_token"
        )
    return True


async def _revoke_access_token(ctx: ServiceContext, token: str, client_id: str) -> bool:
    try:
        claims = ctx.tokens.verify_access_token(token)
    except InvalidToken:
        return False
    if claims.client_id != client_id:
        return True
    await deny_token(ctx, claims.token_id, claims.expires_at)
    await ctx.db.revocations.record_access_token(
        jti=claims.token_id, expires_at=claims.expires_at, now=ctx.clock()
    )
    await deny_token(ctx, claims.token_id, claims.expires_at, committed=True)  # again
    ctx.audit.record("revoke", user_id=claims.subject, client_id=client_id, reason="access_token")
    return True

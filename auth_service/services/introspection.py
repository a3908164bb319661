"""RFC 7662 token introspection for authenticated clients granted it (resource servers).

Anything not currently usable (unknown, malformed, expired, revoked, rotated, of a
disabled user, from another issuer) is exactly `{"active": false}`.
"""

from __future__ import annotations

from typing import Any

from auth_service.errors import InvalidClient, InvalidRequest, InvalidToken
from auth_service.security.refresh import MAX_REFRESH_TOKEN_LENGTH, hash_refresh_token
from auth_service.services.accounts import get_profile
from auth_service.services.clients import ClientCredentials, authenticate_client
from auth_service.services.context import ServiceContext
from auth_service.services.revocation import ensure_not_revoked

__all__ = ["INACTIVE", "introspect"]

INACTIVE: dict[str, Any] = {"active": False}


async def introspect(
    ctx: ServiceContext, params: dict[str, str], credentials: ClientCredentials | None
) -> dict[str, Any]:
    """Describe a token to a resource server that proved who it is."""
    client = await authenticate_client(ctx, credentials)
    if not (client.confidential and client.authenticated and client.introspection):
        # One answer for "no client", "wrong secret" and "not allowed": all are 401.
        raise InvalidClient("introspection needs an authenticated client granted it")
    token = params.get("token")
    if not token:
        raise InvalidRequest("the 'token' parameter is required")
    lookups = [_access_token, _refresh_token]
    if params.get("token_type_hint") == "refresh_token":
        lookups.reverse()
    for lookup in lookups:
        found = await lookup(ctx, token)
        if found is not None:
            return found
    return dict(INACTIVE)


async def _access_token(ctx: ServiceContext, token: str) -> dict[str, Any] | None:
    try:
        claims = ctx.tokens.verify_access_token(token)
        await ensure_not_revoked(ctx, claims)
    except InvalidToken:
        return None
    user: dict[str, Any] = {}
    if not claims.is_client:  # a client's own token has no user (its denylisted epoch
        # covers a disabled, removed or re-keyed client)
        profile = await get_profile(ctx, claims.subject)  # None when gone or disabled
        if profile is None:
            return None
        user = {"username": profile.username}
    return {
        "active": True,
        "token_type": "Bearer",
        "scope": " ".join(sorted(claims.scopes)),
        "client_id": claims.client_id,
        **user,
        "sub": claims.subject,
        "aud": ctx.tokens.audience,
        "iss": ctx.tokens.issuer,
        "exp": int(claims.expires_at.timestamp()),
        "iat": int(claims.issued_at.timestamp()),
        "nbf": int(claims.issued_at.timestamp()),
        "jti": claims.token_id,
        "sid": claims.session_id,
    }


async def _refresh_token(ctx: ServiceContext, token: str) -> dict[str, Any] | None:
    if len(token) > MAX_REFRESH_TOKEN_LENGTH:
        return None
    now = ctx.clock()
    found = await ctx.db.sessions.find_family(hash_refresh_token(token))
    if found is None:
        return None
    row, record = found.token, found.session
    expires = min(record.idle_expires_at, record.absolute_expires_at)
    if row.used_at is not None or record.revoked_at is not None or not found.user_active:
        return None
    if now >= expires:
        return None
    return {
        "active": True,
        "token_type": "refresh_token",
        "scope": record.scope,
        "client_id": record.client_id,
        "username": found.username,
        "sub": record.user_id,
        "iss": ctx.tokens.issuer,
        "exp": int(expires.timestamp()),
        "iat": int(row.issued_at.timestamp()),
        "sid": record.id,
    }

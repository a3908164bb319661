"""The UserInfo endpoint's claims (OpenID Connect Core §5.3, §5.4), per granted scope."""

from __future__ import annotations

from typing import Any

from auth_service.errors import InsufficientScope, InvalidToken
from auth_service.security.tokens import AccessClaims
from auth_service.services.context import ServiceContext
from auth_service.services.scopes import EMAIL_SCOPE, OPENID_SCOPE, PROFILE_SCOPE

__all__ = ["email_claims", "userinfo_claims"]


def email_claims(email: str | None, verified: bool) -> dict[str, Any]:
    """`email` and `email_verified` for the email scope (UserInfo and ID tokens); nothing
    for a user without an address (Core §5.3.2: claims without a value are omitted)."""
    if email is None:
        return {}
    return {"email": email, "email_verified": verified}


async def userinfo_claims(ctx: ServiceContext, claims: AccessClaims) -> dict[str, Any]:
    """The claims of the token's user its scopes release; `sub` always."""
    if OPENID_SCOPE not in claims.scopes:
        raise InsufficientScope(OPENID_SCOPE)
    user = await ctx.db.users.userinfo(claims.subject)
    if user is None:  # deleted, disabled, or not a user at all (a client's own token)
        raise InvalidToken("the token's subject is not an active user")
    body: dict[str, Any] = {"sub": user.id}
    if PROFILE_SCOPE in claims.scopes:
        body["preferred_username"] = user.username
        body["updated_at"] = int(user.updated_at.timestamp())
    if EMAIL_SCOPE in claims.scopes:
        body.update(email_claims(user.email, user.email_verified))
    return body

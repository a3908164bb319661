"""OAuth2 grants (RFC 6749): turn a validated token request into a token response."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from auth_service.errors import InvalidRequest, UnsupportedGrantType
from auth_service.security.tokens import new_token_id
from auth_service.services.accounts import authenticate
from auth_service.services.clients import ClientCredentials, resolve_client
from auth_service.services.context import ServiceContext
from auth_service.services.scopes import parse_requested_scopes

__all__ = ["SUPPORTED_GRANT_TYPES", "TokenGrant", "issue_tokens"]

log = logging.getLogger(__name__)

SUPPORTED_GRANT_TYPES = ("password",)


@dataclass(frozen=True)
class TokenGrant:
    """The RFC 6749 §5.1 success response, before serialisation."""

    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"  # noqa: S105 - the RFC 6750 token type, not a secret


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise InvalidRequest(f"the '{name}' parameter is required")
    return value


async def issue_tokens(
    ctx: ServiceContext, params: dict[str, str], credentials: ClientCredentials | None
) -> TokenGrant:
    """Dispatch on grant_type; `params` are the form fields, each present at most once."""
    grant_type = _required(params, "grant_type")
    if grant_type not in SUPPORTED_GRANT_TYPES:
        raise UnsupportedGrantType(f"supported grant types: {', '.join(SUPPORTED_GRANT_TYPES)}")
    client_id = resolve_client(credentials, default_client_id=ctx.default_client_id)
    return await _password_grant(ctx, params, client_id)


async def _password_grant(
    ctx: ServiceContext, params: dict[str, str], client_id: str
) -> TokenGrant:
    username = _required(params, "username")
    password = _required(params, "password")
    scopes = parse_requested_scopes(params.get("scope"))
    user = await authenticate(ctx, username=username, password=password)
    issued = ctx.tokens.mint_access_token(
        subject=user.id, scopes=scopes, session_id=new_token_id(), client_id=client_id
    )
    log.info("password grant", extra={"user_id": user.id, "client_id": client_id})
    return TokenGrant(
        access_token=issued.token,
        expires_in=issued.expires_in,
        scope=" ".join(sorted(scopes)),
    )

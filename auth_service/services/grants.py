"""OAuth2 grants (RFC 6749): turn a validated token request into a token response."""

from __future__ import annotations

import logging

from auth_service.errors import InvalidRequest, UnsupportedGrantType
from auth_service.services.accounts import authenticate
from auth_service.services.clients import ClientCredentials, resolve_client
from auth_service.services.context import ServiceContext
from auth_service.services.scopes import parse_requested_scopes
from auth_service.services.sessions import ClientInfo, TokenGrant, open_session, refresh

__all__ = ["SUPPORTED_GRANT_TYPES", "issue_tokens"]

log = logging.getLogger(__name__)

SUPPORTED_GRANT_TYPES = ("password", "refresh_token")


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise InvalidRequest(f"the '{name}' parameter is required")
    return value


async def issue_tokens(
    ctx: ServiceContext,
    params: dict[str, str],
    credentials: ClientCredentials | None,
    client: ClientInfo,
) -> TokenGrant:
    """Dispatch on grant_type; `params` are the form fields, each present at most once."""
    grant_type = _required(params, "grant_type")
    if grant_type not in SUPPORTED_GRANT_TYPES:
        raise UnsupportedGrantType(f"supported grant types: {', '.join(SUPPORTED_GRANT_TYPES)}")
    client_id = resolve_client(credentials, default_client_id=ctx.default_client_id)
    if grant_type == "refresh_token":
        refresh_token = _required(params, "refresh_token")
        raw_scope = params.get("scope")
        return await refresh(
            ctx,
            refresh_token,
            requested_scopes=parse_requested_scopes(raw_scope) if raw_scope else None,
            client_id=client_id,
            client=client,
        )
    username = _required(params, "username")
    password = _required(params, "password")
    scopes = parse_requested_scopes(params.get("scope"))
    user = await authenticate(ctx, username=username, password=password)
    return await open_session(ctx, user, scopes=scopes, client_id=client_id, client=client)

"""OAuth2 grants (RFC 6749): turn a validated token request into a token response."""

from __future__ import annotations

from auth_service.errors import (
    InvalidGrant,
    InvalidRequest,
    TooManyAttempts,
    UnauthorizedClient,
    UnsupportedGrantType,
)
from auth_service.services.accounts import authenticate
from auth_service.services.clients import ClientCredentials, authenticate_client
from auth_service.services.code_flow import exchange_code
from auth_service.services.context import ServiceContext
from auth_service.services.scopes import grantable_scopes, parse_requested_scopes
from auth_service.services.sessions import RequestOrigin, TokenGrant, open_session, refresh

__all__ = ["SUPPORTED_GRANT_TYPES", "issue_tokens"]

SUPPORTED_GRANT_TYPES = ("authorization_code", "password", "refresh_token")


def _required(params: dict[str, str], name: str) -> str:
    value = params.get(name)
    if not value:
        raise InvalidRequest(f"the '{name}' parameter is required")
    return value


async def issue_tokens(
    ctx: ServiceContext,
    params: dict[str, str],
    credentials: ClientCredentials | None,
    origin: RequestOrigin,
) -> TokenGrant:
    """Dispatch on grant_type; `params` are the form fields, each present at most once."""
    grant_type = _required(params, "grant_type")
    if grant_type not in SUPPORTED_GRANT_TYPES:
        raise UnsupportedGrantType(f"supported grant types: {', '.join(SUPPORTED_GRANT_TYPES)}")
    client = await authenticate_client(ctx, credentials)
    if grant_type not in client.grant_types:
        raise UnauthorizedClient(f"this client may not use the {grant_type} grant")
    if grant_type == "authorization_code":
        try:
            return await exchange_code(ctx, client, params, origin)
        except InvalidGrant as exc:
            ctx.audit.record(
                "code_exchange",
                outcome="failure",
                client_id=client.client_id,
                reason=exc.description,
            )
            raise
    requested = parse_requested_scopes(params.get("scope"))
    if grant_type == "refresh_token":
        refresh_token = _required(params, "refresh_token")
        try:
            return await refresh(
                ctx,
                refresh_token,
                requested_scopes=requested,
                client_id=client.client_id,
                origin=origin,
                id_token_alg=client.id_token_alg,
            )
        except InvalidGrant as exc:
            ctx.audit.record(
                "refresh", outcome="failure", client_id=client.client_id, reason=exc.description
            )
            raise
    username = _required(params, "username")
    password = _required(params, "password")
    if requested is not None:
        grantable_scopes(requested, client.scopes)  # refuse before spending argon2 work
    try:
        async with ctx.throttler.password_check(username, origin.ip, wrong=InvalidGrant):
            user = await authenticate(ctx, username=username, password=password)
    except TooManyAttempts:
        ctx.audit.record("login", outcome="throttled", client_id=client.client_id)
        raise
    except InvalidGrant:
        ctx.audit.record(
            "login", outcome="failure", client_id=client.client_id, reason="bad_credentials"
        )
        raise
    scopes = grantable_scopes(requested, client.scopes, user.scopes.split())
    return await open_session(ctx, user, scopes=scopes, client_id=client.client_id, origin=origin)

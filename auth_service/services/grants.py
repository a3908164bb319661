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
from auth_service.services.client_tokens import client_credentials_grant
from auth_service.services.clients import (
    CLIENT_GRANT_TYPES,
    ClientCredentials,
    authenticate_client,
)
from auth_service.services.code_flow import exchange_code
from auth_service.services.context import ServiceContext
from auth_service.services.mfa_login import (
    MFA_GRANT_TYPES,
    complete_login,
    needs_second_factor,
    require_second_factor,
)
from auth_service.services.scopes import grantable_scopes, parse_requested_scopes
from auth_service.services.sessions import RequestOrigin, TokenGrant, open_session, refresh

__all__ = ["SUPPORTED_GRANT_TYPES", "issue_tokens"]

# What POST /token takes: every grant a client can be registered for, and the second-factor
# grants that finish a password login.
SUPPORTED_GRANT_TYPES = (*CLIENT_GRANT_TYPES, *MFA_GRANT_TYPES)


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
    # The second-factor grants finish a password login: a client may use them if it may
    # use the password grant.
    needed = "password" if grant_type in MFA_GRANT_TYPES else grant_type
    if needed not in client.grant_types or (needed == "password" and not client.first_party):
        # A client registered before this rule existed may still list the password grant.
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
    if grant_type in MFA_GRANT_TYPES:
        return await complete_login(ctx, grant_type, params, client, origin)
    requested = parse_requested_scopes(params.get("scope"))
    if grant_type == "client_credentials":
        return client_credentials_grant(ctx, client, requested)
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
        async with ctx.throttler.password_check(username, origin.ip, wrong=InvalidGrant) as check:
            user = await authenticate(ctx, username=username, password=password)
            second_factor = needs_second_factor(user)
            if second_factor:
                check.second_factor_pending()
    except TooManyAttempts:
        ctx.audit.record("login", outcome="throttled", client_id=client.client_id)
        raise
    except InvalidGrant:
        ctx.audit.record(
            "login", outcome="failure", client_id=client.client_id, reason="bad_credentials"
        )
        raise
    scopes = grantable_scopes(requested, client.scopes, user.scopes.split())
    if second_factor:
        raise await require_second_factor(ctx, user, client_id=client.client_id, scopes=scopes)
    return await open_session(ctx, user, scopes=scopes, client_id=client.client_id, origin=origin)

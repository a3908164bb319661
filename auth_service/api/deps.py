"""Dependency aliases for routers: the service context and verified bearer claims."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request, Security
from fastapi.security import OAuth2PasswordBearer, SecurityScopes

from auth_service.errors import InsufficientScope, MissingToken
from auth_service.security.tokens import AccessClaims
from auth_service.services.context import ServiceContext
from auth_service.services.revocation import ensure_not_revoked
from auth_service.services.scopes import PROFILE_SCOPE, SUPPORTED_SCOPES
from auth_service.services.sessions import ClientInfo

__all__ = ["BearerClaims", "ContextDep", "ProfileClaims", "bearer_scheme", "client_info"]

# Declares the OAuth2 password flow in openapi.json, which drives Swagger UI's Authorize
# button; auto_error is off so that failures go through our RFC 6750 mapping.
bearer_scheme = OAuth2PasswordBearer(tokenUrl="token", scopes=SUPPORTED_SCOPES, auto_error=False)


def get_context(request: Request) -> ServiceContext:
    """The ServiceContext built by the app's lifespan."""
    return cast(ServiceContext, request.app.state.services)


ContextDep = Annotated[ServiceContext, Depends(get_context)]


async def access_claims(
    security_scopes: SecurityScopes,
    ctx: ContextDep,
    token: Annotated[str | None, Depends(bearer_scheme)],
) -> AccessClaims:
    """Verify the bearer token, that it is not revoked, and that it has the route's scopes."""
    if token is None:
        raise MissingToken
    claims = ctx.tokens.verify_access_token(token)
    await ensure_not_revoked(ctx, claims)
    for scope in security_scopes.scopes:
        if scope not in claims.scopes:
            raise InsufficientScope(scope)
    return claims


ProfileClaims = Annotated[AccessClaims, Security(access_claims, scopes=[PROFILE_SCOPE])]

BearerClaims = Annotated[AccessClaims, Security(access_claims)]


def client_info(request: Request) -> ClientInfo:
    """The peer address and user agent, recorded on sessions."""
    return ClientInfo(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )

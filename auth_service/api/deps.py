"""Dependency aliases for routers: the service context and verified bearer claims."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Annotated, cast

from fastapi import Depends, Request, Security
from fastapi.security import OAuth2PasswordBearer, SecurityScopes

from auth_service.errors import InsufficientScope, InvalidToken, MissingToken
from auth_service.security.tokens import AccessClaims
from auth_service.services.context import ServiceContext
from auth_service.services.revocation import ensure_not_revoked
from auth_service.services.scopes import PROFILE_SCOPE, SUPPORTED_SCOPES
from auth_service.services.sessions import RequestOrigin

__all__ = ["BearerClaims", "ContextDep", "ProfileClaims", "access_claims", "client_info"]


async def get_context(request: Request) -> ServiceContext:
    """The ServiceContext built by the app's lifespan.

    Async on purpose: FastAPI runs sync dependencies in a worker thread, a hop per request.
    """
    return cast(ServiceContext, request.app.state.services)


ContextDep = Annotated[ServiceContext, Depends(get_context)]


class VerifiedBearer(OAuth2PasswordBearer):
    """The OAuth2 password flow in openapi.json (it drives Swagger UI's Authorize button)
    and, as a dependency, the verified claims of the request's bearer token.

    One dependency instead of a chain (scheme, context, verifier): FastAPI spends tens of
    microseconds on each node of every request. Failures go through our RFC 6750 mapping.
    """

    async def __call__(  # type: ignore[override]
        self, request: Request, security_scopes: SecurityScopes
    ) -> AccessClaims:
        """Verify the bearer token, that it is a user's and not revoked, and that it has
        the route's scopes."""
        token = await super().__call__(request)
        if token is None:
            raise MissingToken
        ctx = await get_context(request)
        claims = ctx.tokens.verify_access_token(token)
        if claims.is_client:
            # Every bearer route here acts for a user (RFC 6750 §3.1: invalid for this use).
            raise InvalidToken("this resource needs a user's token, not a client's own token")
        await ensure_not_revoked(ctx, claims)
        for scope in security_scopes.scopes:
            if scope not in claims.scopes:
                raise InsufficientScope(scope)
        return claims


access_claims = VerifiedBearer(
    tokenUrl="token",
    scopes=SUPPORTED_SCOPES,
    scheme_name="OAuth2PasswordBearer",  # the name openapi.json has always used
    auto_error=False,
)

ProfileClaims = Annotated[AccessClaims, Security(access_claims, scopes=[PROFILE_SCOPE])]

BearerClaims = Annotated[AccessClaims, Security(access_claims)]


def client_ip(request: Request) -> str | None:
    """The socket peer, or behind trusted proxies the rightmost untrusted X-Forwarded-For hop.

    Reading from the right means a client cannot pick its own address by sending a forged
    header: only hops appended by our proxies are skipped.
    """
    peer = request.client.host if request.client else None
    trusted: tuple[IPv4Network | IPv6Network, ...] = getattr(
        request.app.state, "trusted_proxies", ()
    )
    if peer is None or not trusted or not _in_networks(peer, trusted):
        return peer
    hops = [
        hop.strip()
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
    ]
    for hop in reversed(hops):
        if not _in_networks(hop, trusted):
            return hop if _is_address(hop) else peer
    return peer


def _is_address(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _in_networks(text: str, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    try:
        address = ip_address(text)
    except ValueError:
        return False
    return any(address in network for network in networks)


def client_info(request: Request) -> RequestOrigin:
    """The client address and user agent, recorded on sessions and used for throttling."""
    return RequestOrigin(ip=client_ip(request), user_agent=request.headers.get("user-agent"))

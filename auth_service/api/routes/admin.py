"""Operations for administrators (tokens with the `admin` scope)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Response, Security

from auth_service.api.deps import ContextDep, access_claims
from auth_service.api.schemas import ErrorBody
from auth_service.errors import UserNotFound
from auth_service.security.tokens import AccessClaims
from auth_service.services import accounts
from auth_service.services.scopes import ADMIN_SCOPE

__all__ = ["router"]

router = APIRouter(prefix="/admin", tags=["admin"])

AdminClaims = Annotated[AccessClaims, Security(access_claims, scopes=[ADMIN_SCOPE])]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, invalid, expired or revoked token (RFC 6750)"},
    403: {"model": ErrorBody, "description": "insufficient_scope: needs admin"},
    404: {"model": ErrorBody, "description": "no such user"},
    503: {"model": ErrorBody, "description": "revocation state unreachable (fails closed)"},
}


@router.post(
    "/users/{username}/disable", status_code=204, summary="Disable a user", responses=_ERRORS
)
async def disable_user(username: str, claims: AdminClaims, ctx: ContextDep) -> Response:
    """Block the user's logins and revoke every session and token they hold."""
    await accounts.require_active(ctx, claims.subject)
    if not await accounts.disable(ctx, username):
        raise UserNotFound
    return Response(status_code=204)

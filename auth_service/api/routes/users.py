"""POST /register and GET /users/me."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from auth_service.api.deps import ContextDep, ProfileClaims
from auth_service.api.schemas import ErrorBody, RegisterBody, RejectionBody, UserBody
from auth_service.errors import InvalidToken
from auth_service.services import accounts

__all__ = ["router"]

router = APIRouter(tags=["users"])

_BEARER_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, invalid or expired token (RFC 6750)"},
    403: {"model": ErrorBody, "description": "insufficient_scope"},
}


@router.post(
    "/register",
    status_code=201,
    response_model=UserBody,
    summary="Create an account",
    responses={
        409: {"model": ErrorBody, "description": "username taken"},
        413: {"model": ErrorBody, "description": "body too large"},
        422: {"model": RejectionBody, "description": "username or password rejected, with reasons"},
        503: {"model": ErrorBody, "description": "password hashing saturated"},
    },
)
async def register(body: RegisterBody, ctx: ContextDep) -> UserBody:
    """Register a username and password; only an argon2id hash is stored."""
    profile = await accounts.register(ctx, username=body.username, password=body.password)
    return UserBody(id=profile.id, username=profile.username, created_at=profile.created_at)


@router.get("/users/me", response_model=UserBody, summary="Who am I", responses=_BEARER_ERRORS)
async def me(claims: ProfileClaims, ctx: ContextDep) -> UserBody:
    """The account the bearer token was issued to (needs the `profile` scope)."""
    profile = await accounts.get_profile(ctx, claims.subject)
    if profile is None:
        raise InvalidToken("the account no longer exists or is disabled")
    return UserBody(id=profile.id, username=profile.username, created_at=profile.created_at)

"""POST /register and GET /users/me."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from auth_service.api.deps import ContextDep, ProfileClaims, client_info
from auth_service.api.schemas import (
    ErrorBody,
    PasswordChangeBody,
    RegisterBody,
    RejectionBody,
    UserBody,
)
from auth_service.errors import InvalidToken
from auth_service.services import accounts

__all__ = ["router"]

router = APIRouter(tags=["users"])

_BEARER_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, invalid, expired or revoked token (RFC 6750)"},
    403: {"model": ErrorBody, "description": "insufficient_scope"},
    503: {"model": ErrorBody, "description": "revocation state unreachable (fails closed)"},
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
        429: {"model": ErrorBody, "description": "too many registrations from this address"},
        503: {"model": ErrorBody, "description": "password hashing saturated"},
    },
)
async def register(body: RegisterBody, ctx: ContextDep, request: Request) -> UserBody:
    """Register a username and password; only an argon2id hash is stored."""
    profile = await accounts.register(
        ctx, username=body.username, password=body.password, ip=client_info(request).ip
    )
    return UserBody(id=profile.id, username=profile.username, created_at=profile.created_at)


@router.get("/users/me", response_model=UserBody, summary="Who am I", responses=_BEARER_ERRORS)
async def me(claims: ProfileClaims, ctx: ContextDep) -> UserBody:
    """The account the bearer token was issued to (needs the `profile` scope)."""
    profile = await accounts.get_profile(ctx, claims.subject)
    if profile is None:
        raise InvalidToken("the account no longer exists or is disabled")
    return UserBody(id=profile.id, username=profile.username, created_at=profile.created_at)


@router.post(
    "/users/me/password",
    status_code=204,
    summary="Change my password",
    responses={
        **_BEARER_ERRORS,
        400: {"model": ErrorBody, "description": "the current password is wrong"},
        422: {"model": RejectionBody, "description": "new password rejected, with reasons"},
        503: {"model": ErrorBody, "description": "password hashing saturated"},
    },
)
async def change_password(
    body: PasswordChangeBody, claims: ProfileClaims, ctx: ContextDep
) -> Response:
    """Re-check the current password, set the new one, and end every other session."""
    await accounts.change_password(
        ctx, claims, current_password=body.current_password, new_password=body.new_password
    )
    return Response(status_code=204)

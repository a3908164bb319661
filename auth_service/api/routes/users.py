"""POST /register and GET /users/me."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from auth_service.api.deps import ContextDep, ProfileClaims, client_info
from auth_service.api.schemas import (
    BEARER_ERRORS,
    ErrorBody,
    PasswordChangeBody,
    RegisterBody,
    RejectionBody,
    UserBody,
)
from auth_service.config import Settings
from auth_service.errors import InvalidToken
from auth_service.security.policy import USERNAME_MAX_LENGTH, USERNAME_MIN_LENGTH
from auth_service.services import accounts

__all__ = ["router"]

router = APIRouter(tags=["users"])


# What the username and password rules accept (security/policy.py), for the request schemas:
# the body models only bound the size, the rules run after parsing and answer 422 with
# reasons. Lengths are those of the default settings; whole-string checks (common
# passwords, the password being the username) cannot be written as a schema.
_USERNAME: dict[str, Any] = {
    "description": "letters, digits and . _ @ + -; trimmed and NFKC-normalised; one script "
    "(UTS #39); unique regardless of case and of lookalike characters",
    "pattern": f"^\\s*[\\w.@+-]{{{USERNAME_MIN_LENGTH},{USERNAME_MAX_LENGTH}}}\\s*$",
}
_PASSWORD: dict[str, Any] = {
    "description": "any Unicode but NUL (NFKC-normalised, length counted after it); not a "
    "common password, not the username, not easy to guess (repeats, sequences, keyboard "
    "patterns, the username or the service's name); length per AUTH_PASSWORD_MIN_LENGTH / "
    "AUTH_PASSWORD_MAX_LENGTH",
    "minLength": Settings.model_fields["password_min_length"].default,
    "maxLength": Settings.model_fields["password_max_length"].default,
    "pattern": "^[^\\x00]*$",
}


def _user_body(profile: accounts.UserProfile) -> UserBody:
    return UserBody(
        id=profile.id,
        username=profile.username,
        created_at=profile.created_at,
        email=profile.email,
        email_verified=profile.email_verified,
    )


def _json_body(properties: dict[str, Any]) -> dict[str, Any]:
    """openapi_extra narrowing the JSON body model's properties (merged beside its $ref)."""
    return {
        "requestBody": {"content": {"application/json": {"schema": {"properties": properties}}}}
    }


@router.post(
    "/register",
    status_code=201,
    response_model=UserBody,
    summary="Create an account",
    responses={
        400: {"model": ErrorBody, "description": "invalid_request: the body is not UTF-8 JSON"},
        409: {"model": ErrorBody, "description": "username taken"},
        413: {"model": ErrorBody, "description": "body too large"},
        422: {
            "model": RejectionBody,
            "description": "username, password or email rejected, with reasons",
        },
        429: {"model": ErrorBody, "description": "too many registrations from this address"},
        503: {"model": ErrorBody, "description": "password hashing saturated"},
    },
    openapi_extra=_json_body({"username": _USERNAME, "password": _PASSWORD}),
)
async def register(body: RegisterBody, ctx: ContextDep, request: Request) -> UserBody:
    """Register a username and password; only an argon2id hash is stored."""
    profile = await accounts.register(
        ctx,
        username=body.username,
        password=body.password,
        ip=client_info(request).ip,
        email=body.email,
    )
    return _user_body(profile)


@router.get("/users/me", response_model=UserBody, summary="Who am I", responses=BEARER_ERRORS)
async def me(claims: ProfileClaims, ctx: ContextDep) -> Response:
    """The account the bearer token was issued to (needs the `profile` scope)."""
    profile = await accounts.get_profile(ctx, claims.subject)
    if profile is None:
        raise InvalidToken("the account no longer exists or is disabled")
    body = _user_body(profile)
    # Serialised here: FastAPI would validate the model it was just built from again.
    return Response(body.model_dump_json(), media_type="application/json")


@router.post(
    "/users/me/password",
    status_code=204,
    summary="Change my password",
    responses={
        **BEARER_ERRORS,
        400: {
            "model": ErrorBody,
            "description": "the current password is wrong, or the body is not UTF-8 JSON",
        },
        413: {"model": ErrorBody, "description": "body too large"},
        422: {"model": RejectionBody, "description": "new password rejected, with reasons"},
        429: {"model": ErrorBody, "description": "too many wrong passwords; see Retry-After"},
        503: {"model": ErrorBody, "description": "password hashing saturated"},
    },
    openapi_extra=_json_body({"new_password": _PASSWORD}),
)
async def change_password(
    body: PasswordChangeBody, claims: ProfileClaims, ctx: ContextDep, request: Request
) -> Response:
    """Re-check the current password, set the new one, and end every other session."""
    await accounts.change_password(
        ctx,
        claims,
        current_password=body.current_password,
        new_password=body.new_password,
        ip=client_info(request).ip,
    )
    return Response(status_code=204)

"""Email address and password reset, for apps (JSON): POST /users/me/email,
POST /password-reset, POST /password-reset/confirm, POST /email/verify.

POST /password-reset, POST /password-reset/confirm and POST /email/verify are routed by
api/routes/account_pages.py, which shares the paths with the pages behind the mailed
links: a form POST gets a page back, a JSON POST these JSON handlers.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ValidationError

from auth_service.api.deps import ContextDep, ProfileClaims, client_info
from auth_service.api.errors import NO_STORE
from auth_service.api.schemas import (
    EmailChangeBody,
    ErrorBody,
    PasswordResetBody,
    PasswordResetConfirmBody,
    RejectionBody,
    ResetAcceptedBody,
    UserBody,
)
from auth_service.errors import InvalidRequest
from auth_service.services import email_addresses, password_reset

__all__ = [
    "RESET_ACCEPTED",
    "PasswordResetBody",
    "PasswordResetConfirmBody",
    "VerifyBody",
    "ask_reset_json",
    "confirm_reset_json",
    "read_json",
    "router",
    "verify_email_json",
]

router = APIRouter(tags=["accounts"])

RESET_ACCEPTED = ResetAcceptedBody(
    status="accepted",
    detail="if an account with a verified address matches, a reset link is on its way",
)
_ACCEPTED_BYTES = RESET_ACCEPTED.model_dump_json().encode()
_Model = TypeVar("_Model", bound=BaseModel)


async def read_json(request: Request, model: type[_Model]) -> _Model:
    """Validate a JSON body against `model` (the routes that also take forms read it so)."""
    try:
        return model.model_validate_json(await request.body())
    except ValidationError as exc:
        reasons = [
            ".".join(str(part) for part in error.get("loc", ())) + ": " + error["msg"]
            for error in exc.errors(include_input=False)
        ]
        raise InvalidRequest("the request body is invalid: " + "; ".join(reasons)) from exc


def _json_request(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


@router.post(
    "/users/me/email",
    response_model=UserBody,
    summary="Set or change my email address",
    responses={
        413: {"model": ErrorBody, "description": "body too large"},
        400: {"model": ErrorBody, "description": "the password is wrong"},
        401: {"description": "missing, invalid, expired or revoked token (RFC 6750)"},
        422: {"model": RejectionBody, "description": "not an email address, with reasons"},
        429: {"model": ErrorBody, "description": "too many wrong passwords; see Retry-After"},
    },
)
async def change_email(
    body: EmailChangeBody, claims: ProfileClaims, ctx: ContextDep, request: Request
) -> UserBody:
    """Store the address unverified and mail a link to it; the old address is told."""
    profile = await email_addresses.set_email(
        ctx, claims, email=body.email, password=body.password, ip=client_info(request).ip
    )
    return UserBody(
        id=profile.id,
        username=profile.username,
        created_at=profile.created_at,
        email=profile.email,
        email_verified=profile.email_verified,
    )


async def ask_reset_json(request: Request, ctx: ContextDep) -> Response:
    """Always 202 with the same body, whether or not an account matches (OWASP)."""
    body = await read_json(request, PasswordResetBody)
    await password_reset.request_password_reset(
        ctx, email=body.email, username=body.username, ip=client_info(request).ip
    )
    return Response(_ACCEPTED_BYTES, status_code=202, media_type="application/json")


async def confirm_reset_json(request: Request, ctx: ContextDep) -> Response:
    """JSON {"token", "new_password"}: 204, every session ended, nobody logged in."""
    body = await read_json(request, PasswordResetConfirmBody)
    await password_reset.confirm_password_reset(
        ctx, token=body.token, new_password=body.new_password
    )
    return Response(status_code=204, headers=NO_STORE)


class VerifyBody(BaseModel):
    """The token from the mailed verification link."""

    model_config = {"extra": "forbid"}

    token: str


async def verify_email_json(request: Request, ctx: ContextDep) -> Response:
    """JSON {"token"}: 204 once the address is verified."""
    body = await read_json(request, VerifyBody)
    await email_addresses.verify_email(ctx, body.token)
    return Response(status_code=204, headers=NO_STORE)

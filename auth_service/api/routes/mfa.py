"""TOTP enrolment under /users/me/mfa/totp, and DELETE /users/me (both need the password)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from auth_service.api.deps import ContextDep, ProfileClaims, client_info
from auth_service.api.errors import NO_STORE
from auth_service.api.schemas import (
    ErrorBody,
    PasswordBody,
    RecoveryCodesBody,
    TotpCodeBody,
    TotpEnrolmentBody,
)
from auth_service.services import account_deletion, mfa

__all__ = ["router"]

router = APIRouter(tags=["users"])

_BEARER_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing, invalid, expired or revoked token (RFC 6750)"},
    403: {"model": ErrorBody, "description": "insufficient_scope"},
    413: {"model": ErrorBody, "description": "body too large"},
    422: {"model": ErrorBody, "description": "the body is not the expected JSON"},
    503: {"model": ErrorBody, "description": "revocation state unreachable, or hashing busy"},
}
_REAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    **_BEARER_ERRORS,
    400: {"model": ErrorBody, "description": "invalid_current_password"},
    429: {"model": ErrorBody, "description": "too many wrong passwords or codes; Retry-After"},
}


@router.post(
    "/users/me/mfa/totp",
    response_model=TotpEnrolmentBody,
    summary="Start a TOTP enrolment",
    responses={
        **_REAUTH_ERRORS,
        409: {"model": ErrorBody, "description": "mfa_already_enabled: remove it first"},
    },
)
async def start_totp(
    body: PasswordBody, claims: ProfileClaims, ctx: ContextDep, request: Request
) -> JSONResponse:
    """Re-check the password; return a new seed, its otpauth:// URI and QR code (SVG).

    The factor stays pending (logins need no code) until confirmed with a code.
    """
    enrolment = await mfa.start_totp(
        ctx, claims, password=body.password, ip=client_info(request).ip
    )
    payload = TotpEnrolmentBody(
        secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri, qr_svg=enrolment.qr_svg
    )
    return JSONResponse(payload.model_dump(), headers=NO_STORE)


@router.post(
    "/users/me/mfa/totp/confirm",
    response_model=RecoveryCodesBody,
    summary="Confirm the TOTP enrolment with a code",
    responses={
        **_BEARER_ERRORS,
        400: {"model": ErrorBody, "description": "invalid_code"},
        409: {"model": ErrorBody, "description": "mfa_not_pending"},
        429: {"model": ErrorBody, "description": "too many wrong codes; see Retry-After"},
    },
)
async def confirm_totp(
    body: TotpCodeBody, claims: ProfileClaims, ctx: ContextDep, request: Request
) -> JSONResponse:
    """Enable the factor; return ten single-use recovery codes (this once) and end every
    other session of the account."""
    codes = await mfa.confirm_totp(ctx, claims, code=body.code, ip=client_info(request).ip)
    return JSONResponse(RecoveryCodesBody(recovery_codes=codes).model_dump(), headers=NO_STORE)


@router.delete(
    "/users/me/mfa/totp",
    status_code=204,
    summary="Remove the TOTP factor",
    responses={
        **_REAUTH_ERRORS,
        404: {"model": ErrorBody, "description": "mfa_not_enabled"},
    },
)
async def remove_totp(
    body: PasswordBody, claims: ProfileClaims, ctx: ContextDep, request: Request
) -> Response:
    """Re-check the password; remove the factor (pending or enabled) and recovery codes."""
    await mfa.remove_totp(ctx, claims, password=body.password, ip=client_info(request).ip)
    return Response(status_code=204)


@router.delete(
    "/users/me",
    status_code=204,
    summary="Delete my account",
    responses=_REAUTH_ERRORS,
)
async def delete_me(
    body: PasswordBody, claims: ProfileClaims, ctx: ContextDep, request: Request
) -> Response:
    """Re-check the password; delete the account and its personal data and end every
    session. The username stays reserved for AUTH_DELETED_USERNAME_HOLD_SECONDS."""
    await account_deletion.delete_own_account(
        ctx, claims, password=body.password, ip=client_info(request).ip
    )
    return Response(status_code=204)

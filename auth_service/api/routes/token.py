"""POST /token: the OAuth2 token endpoint (RFC 6749 §3.2, §4.3, §5)."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from auth_service.api.deps import ContextDep, client_info
from auth_service.api.errors import NO_STORE
from auth_service.api.forms import client_credentials, read_form
from auth_service.api.schemas import ErrorBody, OAuthErrorBody
from auth_service.services.grants import SUPPORTED_GRANT_TYPES, issue_tokens
from auth_service.services.sessions import TokenGrant

__all__ = ["router"]

router = APIRouter(tags=["oauth2"])

_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": list(SUPPORTED_GRANT_TYPES)},
        "username": {"type": "string", "description": "password grant"},
        "password": {"type": "string", "format": "password", "description": "password grant"},
        "refresh_token": {"type": "string", "description": "refresh_token grant"},
        "code": {"type": "string", "description": "authorization_code grant"},
        "redirect_uri": {"type": "string", "description": "authorization_code grant"},
        "code_verifier": {"type": "string", "description": "authorization_code grant (PKCE)"},
        "mfa_token": {
            "type": "string",
            "description": "second-factor grants: the mfa_token of the mfa_required answer",
        },
        "otp": {"type": "string", "description": "mfa-otp grant: the 6-digit TOTP code"},
        "recovery_code": {
            "type": "string",
            "format": "password",
            "description": "mfa-recovery-code grant: one unused recovery code",
        },
        "scope": {"type": "string", "description": "space-separated scope names"},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string", "format": "password"},
        "client_assertion_type": {
            "type": "string",
            "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
            "description": "private_key_jwt (RFC 7523)",
        },
        "client_assertion": {"type": "string", "description": "private_key_jwt (RFC 7523)"},
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {
        "model": OAuthErrorBody,
        "description": "RFC 6749 §5.2 error; `mfa_required` (the password was right, a "
        "second factor is due) carries the `mfa_token` for the next step",
    },
    401: {"model": ErrorBody, "description": "invalid_client"},
    429: {"model": ErrorBody, "description": "too many failed logins; see Retry-After"},
    413: {"model": ErrorBody, "description": "body too large"},
    503: {"model": ErrorBody, "description": "password checks saturated; see Retry-After"},
}


@router.post(
    "/token",
    response_model=TokenGrant,
    summary="Issue tokens (code, password, refresh, client_credentials, second-factor grants)",
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA}},
        }
    },
)
async def token(request: Request, ctx: ContextDep) -> JSONResponse:
    """authorization_code (the OpenID Connect code flow), password grant (opens a session,
    or asks for a second factor), the second-factor grants (open the session), refresh
    grant (rotates its refresh token), or client_credentials (a confidential client's own
    token, no refresh token).

    Errors follow RFC 6749 §5.2.
    """
    params = await read_form(request)
    started = time.perf_counter()
    try:
        grant = await issue_tokens(
            ctx, params, client_credentials(request, params), client_info(request)
        )
    finally:
        grant_type = params.get("grant_type", "")
        if grant_type in SUPPORTED_GRANT_TYPES:  # never a label from the client's own text
            ctx.audit.grant_seconds.labels(grant_type).observe(time.perf_counter() - started)
    body = {name: value for name, value in asdict(grant).items() if value is not None}
    return JSONResponse(body, headers=NO_STORE)

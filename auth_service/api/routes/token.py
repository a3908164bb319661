"""POST /token: the OAuth2 token endpoint (RFC 6749 §3.2, §4.3, §5)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from auth_service.api.deps import ContextDep, client_info
from auth_service.api.errors import NO_STORE
from auth_service.api.forms import client_credentials, read_form
from auth_service.api.schemas import ErrorBody, TokenBody
from auth_service.services.grants import SUPPORTED_GRANT_TYPES, issue_tokens

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
        "scope": {"type": "string", "description": "space-separated scope names"},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string", "format": "password"},
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "RFC 6749 §5.2 error"},
    401: {"model": ErrorBody, "description": "invalid_client"},
    429: {"model": ErrorBody, "description": "too many failed logins; see Retry-After"},
    413: {"model": ErrorBody, "description": "body too large"},
    503: {"model": ErrorBody, "description": "password checks saturated; see Retry-After"},
}


@router.post(
    "/token",
    response_model=TokenBody,
    summary="Issue tokens (authorization_code, password and refresh_token grants)",
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-www-form-urlencoded": {"schema": _FORM_SCHEMA}},
        }
    },
)
async def token(request: Request, ctx: ContextDep) -> JSONResponse:
    """Password grant (opens a session) or refresh grant (rotates its refresh token).

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
    body = TokenBody(
        access_token=grant.access_token,
        token_type=grant.token_type,
        expires_in=grant.expires_in,
        refresh_token=grant.refresh_token,
        scope=grant.scope,
        id_token=grant.id_token,
    )
    return JSONResponse(body.model_dump(exclude_none=True), headers=NO_STORE)

"""Logout, RFC 7009 revocation, RFC 7662 introspection, and the caller's session list."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from auth_service.api.deps import BearerClaims, ContextDep, ProfileClaims
from auth_service.api.errors import NO_STORE
from auth_service.api.forms import client_credentials, read_form
from auth_service.api.schemas import BEARER_ERRORS, ErrorBody
from auth_service.services import introspection
from auth_service.services import logout as logout_service
from auth_service.services.logout import LogoutScope
from auth_service.services.sessions import SessionView, list_sessions

__all__ = ["router"]

router = APIRouter(tags=["sessions"])

# What api/forms.py accepts: an empty value counts as omitted (RFC 6749 §3.1), so only the
# required `token` needs a character; NUL anywhere, a repeated parameter (an array) or more
# than 16 parameters is 400 invalid_request; unknown parameters are ignored.
_NO_NUL = "^[^\\x00]*$"
_FORM_VALUE: dict[str, Any] = {"type": "string", "pattern": _NO_NUL}
_TOKEN_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["token"],
    "properties": {
        "token": {**_FORM_VALUE, "minLength": 1},
        "token_type_hint": {
            **_FORM_VALUE,
            "description": "access_token or refresh_token; other values are ignored (RFC 7009)",
            "examples": ["access_token", "refresh_token"],
        },
        "client_id": _FORM_VALUE,
        "client_secret": {**_FORM_VALUE, "format": "password"},
    },
    "additionalProperties": _FORM_VALUE,
    "propertyNames": {"pattern": _NO_NUL},
    "maxProperties": 16,
    # client_secret_post names the client (RFC 6749 §2.3.1).
    "if": {"required": ["client_secret"], "properties": {"client_secret": {"minLength": 1}}},
    "then": {"required": ["client_id"], "properties": {"client_id": {"minLength": 1}}},
}


def _token_form_docs(ok: str, unauthorized: str) -> dict[str, Any]:
    """OpenAPI metadata shared by the two RFC 7009/7662 form endpoints."""
    return {
        "responses": {
            200: {"description": ok},
            400: {"model": ErrorBody, "description": "invalid_request"},
            401: {"model": ErrorBody, "description": unauthorized},
            413: {"model": ErrorBody, "description": "body too large"},
            503: {"model": ErrorBody, "description": "revocation state unreachable"},
        },
        "openapi_extra": {
            "requestBody": {
                "required": True,
                "content": {"application/x-www-form-urlencoded": {"schema": _TOKEN_FORM}},
            }
        },
    }


@router.post("/logout", status_code=204, summary="Log out", responses=BEARER_ERRORS)
async def logout(
    claims: BearerClaims,
    ctx: ContextDep,
    scope: Annotated[LogoutScope, Query(description="local, others or global")] = (
        LogoutScope.LOCAL
    ),
) -> Response:
    """End this session (`local`), every other one (`others`) or all (`global`)."""
    await logout_service.logout(ctx, claims, scope)
    return Response(status_code=204)


@router.post(
    "/revoke",
    summary="Revoke a token (RFC 7009)",
    response_class=Response,  # documents the 200 without a JSON body
    **_token_form_docs("revoked, or nothing to revoke (empty body)", "invalid_client"),
)
async def revoke(request: Request, ctx: ContextDep) -> Response:
    """A refresh token ends its session; an access token dies alone. Always 200."""
    params = await read_form(request)
    await logout_service.revoke(ctx, params, client_credentials(request, params))
    return Response(status_code=200, headers=NO_STORE)


@router.post(
    "/introspect",
    summary="Introspect a token (RFC 7662)",
    **_token_form_docs(
        'token description, or exactly {"active": false}',
        "invalid_client: needs a confidential client granted introspection",
    ),
)
async def introspect(request: Request, ctx: ContextDep) -> JSONResponse:
    """Whether a token is active now, and what it says; only for clients granted it."""
    params = await read_form(request)
    body = await introspection.introspect(ctx, params, client_credentials(request, params))
    return JSONResponse(body, headers=NO_STORE)


@router.get(
    "/sessions", response_model=list[SessionView], summary="My sessions", responses=BEARER_ERRORS
)
async def sessions(claims: ProfileClaims, ctx: ContextDep) -> list[SessionView]:
    """The caller's open sessions, newest first, without tokens."""
    return await list_sessions(ctx, claims.subject, claims.session_id)


@router.delete(
    "/sessions/{session_id}",
    status_code=204,
    summary="End one of my sessions",
    responses={**BEARER_ERRORS, 404: {"model": ErrorBody, "description": "no such session"}},
)
async def delete_session(session_id: str, claims: ProfileClaims, ctx: ContextDep) -> Response:
    """Revoke one of the caller's sessions (404 for anyone else's)."""
    await logout_service.delete_session(ctx, claims, session_id)
    return Response(status_code=204)

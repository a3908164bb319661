"""Operations for administrators (tokens with the `admin` scope)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, Security

from auth_service.api.deps import ContextDep, access_claims
from auth_service.api.schemas import AdminUserBody, AdminUserPage, ErrorBody
from auth_service.errors import UserNotFound
from auth_service.security.tokens import AccessClaims
from auth_service.services import accounts, user_admin
from auth_service.services.scopes import ADMIN_SCOPE
from auth_service.services.user_admin import UserSummary

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


def _body(user: UserSummary) -> AdminUserBody:
    return AdminUserBody(
        id=user.id,
        username=user.username,
        active=user.active,
        scopes=list(user.scopes),
        created_at=user.created_at,
        updated_at=user.updated_at,
        disabled_at=user.disabled_at,
        open_sessions=user.open_sessions,
    )


_LIST_ERRORS: dict[int | str, dict[str, Any]] = {code: _ERRORS[code] for code in (401, 403, 503)}
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "active, or disabled too recently for deletion"}
}


@router.get("/users", summary="List users", response_model=AdminUserPage, responses=_LIST_ERRORS)
async def list_users(
    _: AdminClaims,
    ctx: ContextDep,
    disabled: Annotated[bool, Query(description="only disabled users")] = False,
    after: Annotated[
        str | None,
        # No NUL: PostgreSQL refuses it in text (a 500 instead of a page).
        Query(max_length=256, pattern="^[^\\x00]*$", description="`next` of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=user_admin.MAX_PAGE)] = 100,
) -> AdminUserPage:
    """Users ordered by canonical name, one page at a time."""
    page = await user_admin.list_users(ctx, disabled_only=disabled, after=after, limit=limit)
    return AdminUserPage(users=[_body(user) for user in page.users], next=page.next_cursor)


@router.get(
    "/users/{username}", summary="Show a user", response_model=AdminUserBody, responses=_ERRORS
)
async def show_user(username: str, _: AdminClaims, ctx: ContextDep) -> AdminUserBody:
    """One user's state, scopes and number of open sessions."""
    user = await user_admin.show(ctx, username)
    if user is None:
        raise UserNotFound
    return _body(user)


@router.post(
    "/users/{username}/enable", status_code=204, summary="Enable a user", responses=_ERRORS
)
async def enable_user(username: str, _: AdminClaims, ctx: ContextDep) -> Response:
    """Allow logins again; tokens and sessions ended by the disable stay dead."""
    if not await user_admin.enable(ctx, username):
        raise UserNotFound
    return Response(status_code=204)


@router.delete(
    "/users/{username}",
    status_code=204,
    summary="Delete a user",
    responses={**_ERRORS, **_CONFLICT},
)
async def delete_user(username: str, _: AdminClaims, ctx: ContextDep) -> Response:
    """Delete a user disabled longer than the access-token lifetime (with its sessions)."""
    if not await user_admin.delete(ctx, username):
        raise UserNotFound
    return Response(status_code=204)

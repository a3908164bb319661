"""OpenID Connect endpoints besides /authorize: UserInfo (Core §5.3) and RP-initiated
logout (RP-Initiated Logout 1.0 §2, §3)."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from auth_service.api.deps import ContextDep
from auth_service.api.errors import NO_STORE
from auth_service.api.forms import read_form, read_parameters
from auth_service.api.pages import CSRF_FIELD, CsrfGuard, Pages, SessionCookie, page_headers
from auth_service.api.schemas import BEARER_ERRORS, ErrorBody
from auth_service.errors import InvalidRequest, MissingToken, UntrustedAuthorizationRequest
from auth_service.services.end_session import check_logout, log_out
from auth_service.services.revocation import ensure_not_revoked
from auth_service.services.userinfo import userinfo_claims

__all__ = ["router"]

router = APIRouter(tags=["openid"])

_LOGOUT_PURPOSE = "logout"


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


_USERINFO_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}}},
    # No model: without credentials RFC 6750 §3.1 gives no error code, only the challenge.
    401: BEARER_ERRORS[401],
    403: {"model": ErrorBody, "description": "RFC 6750 insufficient_scope (openid)"},
}


@router.get(
    "/userinfo",
    summary="OpenID Connect UserInfo",
    operation_id="userinfo_get",
    responses=_USERINFO_RESPONSES,
)
@router.post(
    "/userinfo",
    summary="OpenID Connect UserInfo (form access_token)",
    operation_id="userinfo_post",
    responses=_USERINFO_RESPONSES,
)
async def userinfo(request: Request, ctx: ContextDep) -> Response:
    """Claims about the bearer token's user: `sub`; `preferred_username` and `updated_at`
    with `profile`; `email`, `email_verified` with `email`. The token (an access token,
    never an ID token) comes in the Authorization header or, on POST, as the form field
    `access_token` (RFC 6750 §2.2), not both."""
    token = _bearer(request)
    if request.method == "POST" and request.headers.get("content-type", "").startswith(
        "application/x-www-form-urlencoded"
    ):
        form_token = (await read_form(request)).get("access_token")
        if form_token is not None and token is not None:
            raise InvalidRequest("send the access token once")
        token = token or form_token
    if token is None:
        raise MissingToken
    claims = ctx.tokens.verify_access_token(token)
    await ensure_not_revoked(ctx, claims)
    body: dict[str, Any] = await userinfo_claims(ctx, claims)
    return JSONResponse(body, headers=NO_STORE)


@router.api_route("/end_session", methods=["GET", "POST"], include_in_schema=False)
async def end_session(request: Request, ctx: ContextDep) -> Response:
    """RP-initiated logout: straight back to the client when its id_token_hint verifies
    and the post-logout URI is registered for it; otherwise confirm on our page first."""
    pages = cast(Pages, request.app.state.pages)
    csrf = cast(CsrfGuard, request.app.state.csrf)
    cookie = cast(SessionCookie, request.app.state.session_cookie)
    try:
        params, _ = await read_parameters(request)
    except InvalidRequest as exc:
        raise UntrustedAuthorizationRequest(exc.description) from None
    if request.method == "POST" and params.get("confirm") == "yes":
        await csrf.verify(request, params.get(CSRF_FIELD), _LOGOUT_PURPOSE)
        await log_out(ctx, cookie.read(request), None)
        done: Response = pages.render("logged_out.html", title="Signed out")
        cookie.clear(done)
        return done
    checked = await check_logout(ctx, params)
    if checked.location is not None:
        await log_out(ctx, cookie.read(request), checked.hint)
        status = 302 if request.method == "GET" else 303
        response = Response(
            status_code=status, headers={**page_headers(), "Location": checked.location}
        )
        cookie.clear(response)
        return response
    token, fresh = await csrf.issue(request, _LOGOUT_PURPOSE)
    response = pages.render(
        "logout_confirm.html",
        title="Sign out",
        client_name=checked.client.client_id if checked.client is not None else None,
        action="/end_session",
        csrf_token=token,
    )
    csrf.set_cookie(response, fresh)
    return response

"""The login page's second step (a TOTP or recovery code). Rules live in
services/browser_mfa.py; this module reads the form and the binding cookie."""

from __future__ import annotations

from typing import Annotated, cast
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response

from auth_service.api.deps import ContextDep, client_ip
from auth_service.api.pages import CSRF_FIELD, CsrfGuard, Pages, SessionCookie, page_headers
from auth_service.api.pages.mfa_cookie import CODE_PATH, read_binding, set_binding
from auth_service.errors import InvalidGrant, TooManyAttempts
from auth_service.services.authorization import Pending, load_pending
from auth_service.services.browser_mfa import finish_login, second_factor_user

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

RequestId = Annotated[str | None, Query(alias="request", max_length=64)]
_BAD_CODE = "the code is not correct or was already used"


def _redirect(location: str, targets: tuple[str, ...] = ()) -> Response:
    return Response(status_code=303, headers={**page_headers(targets), "Location": location})


async def _page(
    request: Request, pending: Pending, *, error: str | None = None, status_code: int = 200
) -> Response:
    csrf = cast(CsrfGuard, request.app.state.csrf)
    token, fresh = await csrf.issue(request, f"login-code:{pending.request_id}")
    rid = quote(pending.request_id)
    response = cast(Pages, request.app.state.pages).render(
        "login_code.html",
        status_code=status_code,
        form_targets=[pending.request.redirect_uri],
        title="Enter your code",
        client_name=pending.client.client_id,
        error=error,
        action=f"{CODE_PATH}?request={rid}",
        restart=f"/login?request={rid}",
        csrf_token=token,
    )
    csrf.set_cookie(response, fresh)
    return response


@router.get(CODE_PATH)
async def code_page(request: Request, ctx: ContextDep, request_id: RequestId = None) -> Response:
    """The code form, for the browser that just passed the password step."""
    pending = await load_pending(ctx, request_id)
    if await second_factor_user(ctx, pending, read_binding(request)) is None:
        return _redirect(f"/login?request={quote(pending.request_id)}")
    return await _page(request, pending)


@router.post(CODE_PATH)
async def code_submit(request: Request, ctx: ContextDep, request_id: RequestId = None) -> Response:
    """Check the code; on success sign the browser in and resume the request."""
    pending = await load_pending(ctx, request_id)
    form = await request.form()
    token, code = form.get(CSRF_FIELD), form.get("code")
    csrf = cast(CsrfGuard, request.app.state.csrf)
    await csrf.verify(
        request, token if isinstance(token, str) else None, f"login-code:{pending.request_id}"
    )
    user = await second_factor_user(ctx, pending, read_binding(request))
    if user is None:
        return _redirect(f"/login?request={quote(pending.request_id)}")
    session_cookie = cast(SessionCookie, request.app.state.session_cookie)
    try:
        login = await finish_login(
            ctx,
            pending,
            user,
            code=code if isinstance(code, str) else "",
            ip=client_ip(request),
            cookie=session_cookie.read(request),
        )
    except InvalidGrant:
        return await _page(request, pending, error=_BAD_CODE, status_code=401)
    except TooManyAttempts as exc:
        response = await _page(
            request, pending, error="too many attempts, retry later", status_code=429
        )
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response
    response = _redirect(
        f"/authorize/resume?request={quote(pending.request_id)}",
        targets=(pending.request.redirect_uri,),
    )
    session_cookie.set(response, login.cookie)
    set_binding(request, response, None, 0)
    return response

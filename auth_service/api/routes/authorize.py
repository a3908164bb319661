"""The browser side of the authorization-code flow: /authorize, the login and consent
pages, and the step that resumes a pending request after either. Rules live in
services/authorization.py; this module reads parameters and cookies and renders pages."""

from __future__ import annotations

from typing import Annotated, cast
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response

from auth_service.api.deps import ContextDep, client_ip
from auth_service.api.forms import read_parameters
from auth_service.api.pages import CSRF_FIELD, CsrfGuard, Pages, SessionCookie, page_headers
from auth_service.api.pages.mfa_cookie import CODE_PATH, set_binding
from auth_service.errors import (
    InvalidGrant,
    InvalidRequest,
    TooManyAttempts,
    UntrustedAuthorizationRequest,
)
from auth_service.services.authorization import (
    NeedsConsent,
    NeedsLogin,
    Outcome,
    Pending,
    decide,
    deny,
    load_pending,
    record_consent,
    validate,
)
from auth_service.services.browser_sessions import current_session
from auth_service.services.context import ServiceContext
from auth_service.services.login import SecondFactorNeeded, log_in
from auth_service.services.scopes import SUPPORTED_SCOPES

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

RequestId = Annotated[str | None, Query(alias="request", max_length=64)]
_BAD_LOGIN = "invalid username or password"


def _pages(request: Request) -> Pages:
    return cast(Pages, request.app.state.pages)


def _csrf(request: Request) -> CsrfGuard:
    return cast(CsrfGuard, request.app.state.csrf)


def _cookie(request: Request) -> SessionCookie:
    return cast(SessionCookie, request.app.state.session_cookie)


def _redirect(location: str, *, status_code: int = 303, targets: tuple[str, ...] = ()) -> Response:
    headers = {**page_headers(targets), "Location": location}
    return Response(status_code=status_code, headers=headers)


def _answer(request: Request, outcome: Outcome) -> Response:
    if isinstance(outcome, NeedsLogin):
        return _redirect(f"/login?request={quote(outcome.request_id)}")
    if isinstance(outcome, NeedsConsent):
        return _redirect(f"/consent?request={quote(outcome.request_id)}")
    return _redirect(outcome.location, status_code=302 if request.method == "GET" else 303)


async def _form_field(request: Request, name: str) -> str | None:
    form = await request.form()
    value = form.get(name)
    return value if isinstance(value, str) else None


@router.api_route("/authorize", methods=["GET", "POST"])
async def authorize(request: Request, ctx: ContextDep) -> Response:
    """OpenID Connect Core §3.1.2.1 authorization request (query or form)."""
    try:
        params, repeated = await read_parameters(request)
    except InvalidRequest as exc:
        raise UntrustedAuthorizationRequest(exc.description) from None
    client, auth = await validate(ctx, params, repeated)
    browser = await current_session(ctx, _cookie(request).read(request), client_id=client.client_id)
    return _answer(request, await decide(ctx, client, auth, browser))


@router.get("/authorize/resume")
async def resume(request: Request, ctx: ContextDep, request_id: RequestId = None) -> Response:
    """Continue a pending request after the login or consent page."""
    pending = await load_pending(ctx, request_id)
    cookie = _cookie(request).read(request)
    browser = await current_session(ctx, cookie, client_id=pending.client.client_id)
    outcome = await decide(
        ctx, pending.client, pending.request, browser, request_id=pending.request_id
    )
    return _answer(request, outcome)


async def _login_page(
    request: Request,
    pending: Pending,
    *,
    username: str,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    csrf = _csrf(request)
    token, fresh = await csrf.issue(request, f"login:{pending.request_id}")
    response = _pages(request).render(
        "login.html",
        status_code=status_code,
        form_targets=[pending.request.redirect_uri],
        title="Sign in",
        client_name=pending.client.client_id,
        error=error,
        username=username,
        action=f"/login?request={quote(pending.request_id)}",
        csrf_token=token,
    )
    csrf.set_cookie(response, fresh)
    return response


@router.get("/login")
async def login_page(request: Request, ctx: ContextDep, request_id: RequestId = None) -> Response:
    """The login form for a pending request (login_hint pre-fills the username)."""
    pending = await load_pending(ctx, request_id)
    return await _login_page(request, pending, username=pending.request.login_hint or "")


@router.post("/login")
async def login_submit(request: Request, ctx: ContextDep, request_id: RequestId = None) -> Response:
    """Check the credentials; on success sign the browser in and resume the request."""
    pending = await load_pending(ctx, request_id)
    await _csrf(request).verify(
        request, await _form_field(request, CSRF_FIELD), f"login:{pending.request_id}"
    )
    username = await _form_field(request, "username") or ""
    password = await _form_field(request, "password") or ""
    cookie = _cookie(request)
    try:
        if not username or not password:
            raise InvalidGrant
        login = await log_in(
            ctx,
            pending,
            username=username,
            password=password,
            ip=client_ip(request),
            cookie=cookie.read(request),
        )
    except (InvalidGrant, InvalidRequest):
        return await _login_page(
            request, pending, username=username, error=_BAD_LOGIN, status_code=401
        )
    except TooManyAttempts as exc:
        response = await _login_page(
            request,
            pending,
            username=username,
            error="too many attempts, retry later",
            status_code=429,
        )
        response.headers["Retry-After"] = str(exc.retry_after_seconds)
        return response
    if isinstance(login, SecondFactorNeeded):
        return _second_step(request, ctx, pending, login.binding)
    response = _redirect(
        f"/authorize/resume?request={quote(pending.request_id)}",
        targets=(pending.request.redirect_uri,),
    )
    cookie.set(response, login.cookie)
    return response


def _second_step(request: Request, ctx: ServiceContext, pending: Pending, binding: str) -> Response:
    """On to the code form, the browser holding the binding of its password step."""
    response = _redirect(f"{CODE_PATH}?request={quote(pending.request_id)}")
    ttl = int(ctx.accounts.mfa_token_ttl.total_seconds())
    set_binding(request, response, binding, ttl)
    return response


async def _signed_in(request: Request, ctx: ServiceContext, pending: Pending) -> Response | None:
    """None if this browser is signed in; else the way to the login page."""
    cookie = _cookie(request).read(request)
    if await current_session(ctx, cookie, client_id=pending.client.client_id) is None:
        return _redirect(f"/login?request={quote(pending.request_id)}")
    return None


@router.get("/consent")
async def consent_page(request: Request, ctx: ContextDep, request_id: RequestId = None) -> Response:
    """Which scopes the client asks for, with Allow and Deny."""
    pending = await load_pending(ctx, request_id)
    cookie = _cookie(request).read(request)
    browser = await current_session(ctx, cookie, client_id=pending.client.client_id)
    if browser is None:
        return _redirect(f"/login?request={quote(pending.request_id)}")
    csrf = _csrf(request)
    token, fresh = await csrf.issue(request, f"consent:{pending.request_id}")
    response = _pages(request).render(
        "consent.html",
        form_targets=[pending.request.redirect_uri],
        title="Allow access",
        client_name=pending.client.client_id,
        username=browser.username,
        scopes=[
            {"name": s, "description": SUPPORTED_SCOPES.get(s, s)} for s in pending.request.scopes
        ],
        action=f"/consent?request={quote(pending.request_id)}",
        csrf_token=token,
    )
    csrf.set_cookie(response, fresh)
    return response


@router.post("/consent")
async def consent_submit(
    request: Request, ctx: ContextDep, request_id: RequestId = None
) -> Response:
    """`decision=allow` remembers the consent and resumes; `deny` answers access_denied."""
    pending = await load_pending(ctx, request_id)
    await _csrf(request).verify(
        request, await _form_field(request, CSRF_FIELD), f"consent:{pending.request_id}"
    )
    cookie = _cookie(request).read(request)
    browser = await current_session(ctx, cookie, client_id=pending.client.client_id)
    if browser is None:
        return _redirect(f"/login?request={quote(pending.request_id)}")
    decision = await _form_field(request, "decision")
    if decision == "deny":
        raise await deny(ctx, pending)
    if decision != "allow":
        raise UntrustedAuthorizationRequest("the consent form was not answered")
    await record_consent(ctx, pending, browser)
    return _redirect(
        f"/authorize/resume?request={quote(pending.request_id)}",
        targets=(pending.request.redirect_uri,),
    )

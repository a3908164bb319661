"""GET /account and its forms: a thin layer over services/account_page.py and the services
that own each rule. Same page rules as the login page (api/pages): CSP, CSRF, no-store,
no framing; plain forms, no JavaScript. Without a browser session: the login page."""

from __future__ import annotations

import base64
from typing import Any, cast
from urllib.parse import quote

from fastapi import APIRouter, Request, Response

from auth_service.api.deps import ContextDep, client_ip
from auth_service.api.pages import CSRF_FIELD, CsrfGuard, Pages, SessionCookie, page_headers
from auth_service.errors import AuthServiceError, PasswordRejected
from auth_service.repositories import BrowserSessionFound
from auth_service.services import account_deletion, account_page, accounts, email_addresses, mfa
from auth_service.services.account_client import ACCOUNT_PATH
from auth_service.services.context import ServiceContext

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _redirect(location: str) -> Response:
    return Response(status_code=303, headers={**page_headers(), "Location": location})


def _purpose(browser: BrowserSessionFound) -> str:
    return f"account:{browser.session.id}"


async def _browser(request: Request, ctx: ServiceContext) -> BrowserSessionFound | None:
    cookie = cast(SessionCookie, request.app.state.session_cookie).read(request)
    return await account_page.page_session(ctx, cookie)


async def _to_login(ctx: ServiceContext) -> Response:
    return _redirect(f"/login?request={quote(await account_page.start_login(ctx))}")


async def _render(
    request: Request,
    ctx: ServiceContext,
    browser: BrowserSessionFound,
    *,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    view = await account_page.overview(ctx, browser)
    if view is None:
        return await _to_login(ctx)
    csrf = cast(CsrfGuard, request.app.state.csrf)
    token, fresh = await csrf.issue(request, _purpose(browser))
    enrolment = extra.get("enrolment")
    qr = None
    if enrolment is not None:
        qr = "data:image/svg+xml;base64," + base64.b64encode(enrolment.qr_svg.encode()).decode()
    response = cast(Pages, request.app.state.pages).render(
        "account.html",
        status_code=status_code,
        title="Your account",
        profile=view.profile,
        sessions=view.sessions,
        has_totp=view.has_totp,
        recent=account_page.recently_authenticated(ctx, browser),
        csrf_token=token,
        enrolment_qr=qr,
        **{"error": None, "notice": None, "recovery_codes": None, "enrolment": None, **extra},
    )
    csrf.set_cookie(response, fresh)
    return response


@router.get(ACCOUNT_PATH)
async def account(request: Request, ctx: ContextDep) -> Response:
    """The account page of the signed-in browser."""
    browser = await _browser(request, ctx)
    if browser is None:
        return await _to_login(ctx)
    return await _render(request, ctx, browser)


async def _form(
    request: Request, ctx: ServiceContext
) -> tuple[BrowserSessionFound | None, dict[str, str]]:
    """The browser session and the CSRF-checked form of a POST."""
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    browser = await _browser(request, ctx)
    if browser is not None:
        csrf = cast(CsrfGuard, request.app.state.csrf)
        await csrf.verify(request, values.get(CSRF_FIELD), _purpose(browser))
    return browser, values


def _failure(exc: AuthServiceError) -> tuple[str, int]:
    if isinstance(exc, PasswordRejected):
        return exc.description, 400
    status = {"too_many_requests": 429, "invalid_current_password": 403}.get(exc.code, 400)
    return exc.description, status


@router.post(ACCOUNT_PATH + "/{action:path}")
async def account_action(request: Request, ctx: ContextDep, action: str) -> Response:
    """One form of the page: sessions, password, TOTP, email, delete."""
    browser, form = await _form(request, ctx)
    if browser is None:
        return await _to_login(ctx)
    claims = account_page.browser_claims(browser)
    ip = client_ip(request)
    password = form.get("password", "")
    extra: dict[str, Any] = {}
    try:
        if action == "sessions/end":
            await account_page.end_session(ctx, browser, form.get("session_id", ""))
        elif action == "sessions/end-others":
            await account_page.end_other_sessions(ctx, browser)
        elif action == "password":
            await accounts.change_password(
                ctx,
                claims,
                current_password=form.get("current_password", ""),
                new_password=form.get("new_password", ""),
                ip=ip,
            )
            extra["notice"] = "Password changed."
        elif action == "totp":
            recent = account_page.recently_authenticated(ctx, browser)
            extra["enrolment"] = await mfa.start_totp(
                ctx, claims, password=None if recent else password, ip=ip
            )
        elif action == "totp/confirm":
            extra["recovery_codes"] = await mfa.confirm_totp(
                ctx, claims, code=form.get("code", ""), ip=ip
            )
        elif action == "totp/remove":
            await mfa.remove_totp(ctx, claims, password=password, ip=ip)
        elif action == "email/resend":
            view = await account_page.overview(ctx, browser)
            if view is not None and view.profile.email:
                await email_addresses.set_email(
                    ctx, claims, email=view.profile.email, password=password, ip=ip
                )
                extra["notice"] = "Verification mail sent."
        elif action == "delete":
            await account_deletion.delete_own_account(ctx, claims, password=password, ip=ip)
            done = cast(Pages, request.app.state.pages).render(
                "account_done.html", title="Account deleted", message="Your account is deleted."
            )
            cast(SessionCookie, request.app.state.session_cookie).clear(done)
            return done
        else:
            return _redirect(ACCOUNT_PATH)
    except AuthServiceError as exc:
        message, status = _failure(exc)
        return await _render(request, ctx, browser, status_code=status, error=message)
    if extra:
        return await _render(request, ctx, browser, **extra)
    return _redirect(ACCOUNT_PATH)

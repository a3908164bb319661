"""The pages behind mailed links: GET /email/verify and GET /password-reset/confirm.

Mail scanners prefetch links, so a GET never spends a token: it shows a one-button (or
new-password) form, CSRF-protected, bound to the link's token; the POST acts. The same
POST paths take JSON for apps (api/routes/accounts.py): the content type decides.
Pages: strict CSP, Referrer-Policy no-referrer (the URL holds the token), no-store, no
external assets (api/pages).
"""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse

from auth_service.api.deps import ContextDep, client_info
from auth_service.api.errors import NO_STORE
from auth_service.api.forms import read_form
from auth_service.api.pages import CSRF_FIELD, CsrfGuard, Pages
from auth_service.api.routes.accounts import (
    PasswordResetBody,
    PasswordResetConfirmBody,
    VerifyBody,
    ask_reset_json,
    confirm_reset_json,
    verify_email_json,
)
from auth_service.api.schemas import ErrorBody, RejectionBody, ResetAcceptedBody
from auth_service.errors import EmailTaken, InvalidLink, PasswordRejected
from auth_service.security.links import hash_link_token
from auth_service.services import email_addresses, password_reset

__all__ = ["router"]

router = APIRouter(tags=["accounts"])

_FORM = "application/x-www-form-urlencoded"


def _kit(request: Request) -> tuple[Pages, CsrfGuard]:
    return cast(Pages, request.app.state.pages), cast(CsrfGuard, request.app.state.csrf)


def _purpose(kind: str, token: str) -> str:
    # Bound to the link: a form token lifted from one link's page cannot submit another.
    return f"{kind}:{hash_link_token(token)[:32]}"


def _is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").split(";")[0].strip().lower() == _FORM


def _invalid_link_page(pages: Pages) -> Response:
    error = InvalidLink()
    return pages.error(title="Link invalid or expired", message=error.description, code=error.code)


async def _form_page(
    request: Request, template: str, kind: str, token: str, **context: Any
) -> Response:
    pages, csrf = _kit(request)
    csrf_token, fresh = await csrf.issue(request, _purpose(kind, token))
    response = pages.render(template, csrf_token=csrf_token, token=token, **context)
    csrf.set_cookie(response, fresh)
    return response


def _both(model: type[Any]) -> dict[str, Any]:
    fields = {name: {"type": "string"} for name in model.model_fields}
    form = {
        "type": "object",
        "required": [*fields, CSRF_FIELD],
        "properties": {**fields, CSRF_FIELD: {"type": "string"}},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": model.model_json_schema()},
                _FORM: {"schema": form},
            },
        }
    }


_LINK_PAGE: dict[int | str, dict[str, Any]] = {
    400: {"description": "the link is invalid, used or expired (an HTML page)"},
}


@router.get(
    "/email/verify",
    summary="The page behind a verification link",
    response_class=HTMLResponse,
    responses=_LINK_PAGE,
)
async def verify_email_page(request: Request, ctx: ContextDep, token: str = "") -> Response:
    """A one-button form; spends nothing (mail scanners prefetch links)."""
    try:
        await email_addresses.check_verification_link(ctx, token)
    except InvalidLink:
        return _invalid_link_page(_kit(request)[0])
    return await _form_page(request, "email_verify.html", "email-verify", token)


@router.post(
    "/email/verify",
    status_code=204,
    summary="Verify an email address (JSON: 204; the page's form: a page)",
    responses={
        413: {"model": ErrorBody, "description": "body too large"},
        400: {"model": ErrorBody, "description": "invalid_link"},
        403: {"description": "the form's CSRF token is missing or wrong"},
        409: {"model": ErrorBody, "description": "another account verified it first"},
    },
    openapi_extra=_both(VerifyBody),
)
async def verify_email(request: Request, ctx: ContextDep) -> Response:
    """Spend the token and mark the address verified."""
    if not _is_form(request):
        return await verify_email_json(request, ctx)
    pages, csrf = _kit(request)
    form = await read_form(request)
    token = form.get("token", "")
    await csrf.verify(request, form.get(CSRF_FIELD), _purpose("email-verify", token))
    try:
        await email_addresses.verify_email(ctx, token)
    except InvalidLink:
        return _invalid_link_page(pages)
    except EmailTaken as exc:
        return pages.error(
            title="Address already in use", message=exc.description, code=exc.code, status_code=409
        )
    return pages.render(
        "account_done.html", title="Address confirmed", message="Your email address is confirmed."
    )


@router.get("/password-reset", summary="The forgot-password page", response_class=HTMLResponse)
async def ask_reset_page(request: Request) -> Response:
    """A form asking for the account's address (CSRF-protected)."""
    return await _ask_page(request, sent=False)


async def _ask_page(request: Request, *, sent: bool) -> Response:
    pages, csrf = _kit(request)
    csrf_token, fresh = await csrf.issue(request, "password-reset-ask")
    response = pages.render("password_reset_ask.html", csrf_token=csrf_token, sent=sent)
    csrf.set_cookie(response, fresh)
    return response


@router.post(
    "/password-reset",
    status_code=202,
    response_model=ResetAcceptedBody,
    summary="Ask for a password reset link (JSON: 202; the page's form: the page again)",
    responses={
        400: {"model": ErrorBody, "description": "neither or both of email, username"},
        403: {"description": "the form's CSRF token is missing or wrong"},
        413: {"model": ErrorBody, "description": "body too large"},
    },
    openapi_extra=_both(PasswordResetBody),
)
async def ask_reset(request: Request, ctx: ContextDep) -> Response:
    """Always the same answer, whether or not an account matches (OWASP)."""
    if not _is_form(request):
        return await ask_reset_json(request, ctx)
    form = await read_form(request)
    await _kit(request)[1].verify(request, form.get(CSRF_FIELD), "password-reset-ask")
    email = form.get("email", "")
    await password_reset.request_password_reset(
        ctx, email=email or None, username=None if email else "", ip=client_info(request).ip
    )
    return await _ask_page(request, sent=True)


@router.get(
    "/password-reset/confirm",
    summary="The page behind a reset link",
    response_class=HTMLResponse,
    responses=_LINK_PAGE,
)
async def reset_page(request: Request, ctx: ContextDep, token: str = "") -> Response:
    """The new-password form; does not spend the token (scanners prefetch links)."""
    try:
        await password_reset.check_reset_link(ctx, token)
    except InvalidLink:
        return _invalid_link_page(_kit(request)[0])
    return await _form_page(
        request,
        "password_reset_form.html",
        "password-reset",
        token,
        reasons=[],
        min_length=ctx.policy.min_length,
    )


@router.post(
    "/password-reset/confirm",
    status_code=204,
    summary="Set a new password with a reset link's token (JSON: 204; the form: a page)",
    responses={
        413: {"model": ErrorBody, "description": "body too large"},
        400: {"model": ErrorBody, "description": "invalid_link: unknown, used, expired or voided"},
        403: {"description": "the form's CSRF token is missing or wrong"},
        422: {"model": RejectionBody, "description": "new password rejected, with reasons"},
        503: {"model": ErrorBody, "description": "password hashing saturated"},
    },
    openapi_extra=_both(PasswordResetConfirmBody),
)
async def confirm_reset(request: Request, ctx: ContextDep) -> Response:
    """Set the password, end every session, send the notice; never logs in."""
    if not _is_form(request):
        return await confirm_reset_json(request, ctx)
    pages, csrf = _kit(request)
    form = await read_form(request)
    token = form.get("token", "")
    await csrf.verify(request, form.get(CSRF_FIELD), _purpose("password-reset", token))
    try:
        await password_reset.confirm_password_reset(
            ctx, token=token, new_password=form.get("new_password", "")
        )
    except InvalidLink:
        return _invalid_link_page(pages)
    except PasswordRejected as exc:
        response = await _form_page(
            request,
            "password_reset_form.html",
            "password-reset",
            token,
            reasons=exc.reasons,
            min_length=ctx.policy.min_length,
        )
        response.status_code = 422
        return response
    done = pages.render(
        "account_done.html",
        title="Password changed",
        message="Your password is changed and every session is signed out. Sign in again "
        "with the new password.",
    )
    done.headers.update(NO_STORE)
    return done

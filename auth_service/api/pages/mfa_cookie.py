"""The cookie that binds a login's code step to the browser that passed its password
step: HttpOnly, SameSite=Lax, only sent to the code form's path, gone after the MFA
token lifetime."""

from __future__ import annotations

from fastapi import Request, Response

__all__ = ["BINDING_COOKIE", "CODE_PATH", "read_binding", "set_binding"]

CODE_PATH = "/login/code"
BINDING_COOKIE = "auth_mfa_step"


def _secure(request: Request) -> bool:
    return str(request.app.state.settings.effective_issuer).startswith("https://")


def read_binding(request: Request) -> str | None:
    """The binding this browser holds, if any."""
    return request.cookies.get(BINDING_COOKIE)


def set_binding(request: Request, response: Response, value: str | None, max_age: int) -> None:
    """Hand the browser the binding of its password step (None: take it back)."""
    if value is None:
        response.delete_cookie(
            BINDING_COOKIE, path=CODE_PATH, secure=_secure(request), httponly=True
        )
        return
    response.set_cookie(
        BINDING_COOKIE,
        value,
        max_age=max_age,
        path=CODE_PATH,
        secure=_secure(request),
        httponly=True,
        samesite="lax",
    )

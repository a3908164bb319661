"""The browser SSO session cookie: HttpOnly, SameSite=Lax (Strict would drop it on the
relying party's redirect, breaking single sign-on), and `__Host-` with Secure when the
issuer is https (no Domain, Path=/: no sibling host can set or read it)."""

from __future__ import annotations

from datetime import timedelta

from fastapi import Request, Response

__all__ = ["SessionCookie"]


class SessionCookie:
    """Reads and writes the browser session cookie of one issuer."""

    def __init__(self, *, issuer: str, lifetime: timedelta) -> None:
        self._secure = issuer.startswith("https://")
        self.name = "__Host-auth_session" if self._secure else "auth_session"
        self._max_age = int(lifetime.total_seconds())

    def read(self, request: Request) -> str | None:
        """This browser's cookie value, if it sent one."""
        return request.cookies.get(self.name)

    def set(self, response: Response, value: str) -> None:
        """Start (or replace) the browser's session cookie."""
        response.set_cookie(
            self.name,
            value,
            max_age=self._max_age,
            path="/",
            secure=self._secure,
            httponly=True,
            samesite="lax",
        )

    def clear(self, response: Response) -> None:
        """Remove the cookie (after logout)."""
        response.delete_cookie(
            self.name, path="/", secure=self._secure, httponly=True, samesite="lax"
        )

"""CSRF protection for every form: a signed double-submit token bound to what the form does.

The browser holds a random cookie (HttpOnly, SameSite=Lax; `__Host-` and Secure on https).
A form carries HMAC-SHA256(key, cookie | purpose) where `purpose` names the form and the
server-side state it acts on (e.g. `login:<pending request id>`), so a token lifted from
one form cannot submit another. The key is a service secret shared by every replica.
A POST must bring the cookie and the matching token; a browser's `Sec-Fetch-Site:
cross-site` or a foreign `Origin` is refused as well (`Origin: null`, which Chromium sends
under `Referrer-Policy: no-referrer`, is accepted only with a valid token).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from fastapi import Request, Response

from auth_service.errors import CsrfRejected

__all__ = ["CSRF_FIELD", "CsrfGuard"]

CSRF_FIELD = "csrf_token"
_SECRET_NAME = "csrf_signing_key"  # noqa: S105 - the name of the service secret
_COOKIE_BYTES = 32
_MAX_COOKIE_LENGTH = 64


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


class CsrfGuard:
    """Issues and checks form tokens; the signing key is read once from the service secrets."""

    def __init__(self, *, issuer: str, load_key: Callable[[str, str], Awaitable[str]]) -> None:
        self._secure = issuer.startswith("https://")
        self.cookie_name = "__Host-csrf" if self._secure else "auth_csrf"
        self._origin = _origin(issuer)
        self._load_key = load_key
        self._key: bytes | None = None

    async def _signing_key(self) -> bytes:
        if self._key is None:
            value = await self._load_key(_SECRET_NAME, secrets.token_hex(32))
            self._key = bytes.fromhex(value)
        return self._key

    def _sign(self, key: bytes, cookie: str, purpose: str) -> str:
        mac = hmac.new(key, f"{cookie}|{purpose}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")

    def _cookie(self, request: Request) -> str | None:
        value = request.cookies.get(self.cookie_name)
        if value and len(value) <= _MAX_COOKIE_LENGTH:
            return value
        return None

    async def issue(self, request: Request, purpose: str) -> tuple[str, str | None]:
        """The token for a form doing `purpose`, and a new cookie value to set (or None)."""
        cookie = self._cookie(request)
        fresh = None
        if cookie is None:
            cookie = fresh = secrets.token_urlsafe(_COOKIE_BYTES)
        return self._sign(await self._signing_key(), cookie, purpose), fresh

    def set_cookie(self, response: Response, value: str | None) -> None:
        """Attach a newly issued cookie to the page that carries the form."""
        if value is None:
            return
        response.set_cookie(
            self.cookie_name,
            value,
            path="/",
            secure=self._secure,
            httponly=True,
            samesite="lax",
        )

    async def verify(self, request: Request, token: str | None, purpose: str) -> None:
        """Raise CsrfRejected unless the POST carries this browser's token for `purpose`."""
        if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
            raise CsrfRejected
        origin = request.headers.get("origin")
        if origin is not None and origin != "null" and origin.lower() != self._origin:
            raise CsrfRejected
        cookie = self._cookie(request)
        if cookie is None or not token:
            raise CsrfRejected
        expected = self._sign(await self._signing_key(), cookie, purpose)
        if not hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace")):
            raise CsrfRejected

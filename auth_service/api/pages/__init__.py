"""The service's own HTML pages (login, consent, logout, errors): templates, headers, CSRF."""

from __future__ import annotations

from auth_service.api.pages.csrf import CSRF_FIELD, CsrfGuard
from auth_service.api.pages.session_cookie import SessionCookie
from auth_service.api.pages.templating import STYLESHEET_PATH, Pages, page_headers

__all__ = ["CSRF_FIELD", "STYLESHEET_PATH", "CsrfGuard", "Pages", "SessionCookie", "page_headers"]

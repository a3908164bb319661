"""The service's HTML pages: autoescaped Jinja2 templates shipped in the package, each
response with the headers a login page needs (strict CSP, no caching, no framing).

Pages load nothing from elsewhere and run no script: the policy allows only this origin's
stylesheet and data: images. `form-action` lists 'self' plus wherever a form's answer may
redirect (Chromium applies form-action to every redirect after a submission, so a login
that ends at the client's redirect URI needs that origin listed).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, StrictUndefined

__all__ = ["STYLESHEET_PATH", "Pages", "form_action_source", "page_headers"]

STYLESHEET_PATH = "/pages/pages.css"
_BASE_POLICY = (
    "default-src 'none'",
    "style-src 'self'",
    "img-src 'self' data:",
    "frame-ancestors 'none'",
    "base-uri 'none'",
)


def form_action_source(uri: str) -> str | None:
    """The CSP source expression that lets a form's answer redirect to `uri`.

    The origin for http(s) URIs; the scheme alone for a native app's private-use scheme.
    None when the URI cannot be expressed safely (then only 'self' is allowed).
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in {"http", "https"} and parts.netloc:
        host = parts.hostname or ""
        if any(c in host for c in " ;,'\""):
            return None
        port = f":{parts.port}" if parts.port is not None else ""
        bracketed = f"[{host}]" if ":" in host else host
        return f"{scheme}://{bracketed}{port}"
    if scheme and all(c.isalnum() or c in "+-." for c in scheme):
        return f"{scheme}:"
    return None


def page_headers(form_targets: Iterable[str] = ()) -> dict[str, str]:
    """CSP, no-store, no-referrer and no-framing headers for one HTML page."""
    sources = ["'self'"]
    for target in form_targets:
        source = form_action_source(target)
        if source is not None and source not in sources:
            sources.append(source)
    policy = "; ".join((*_BASE_POLICY, "form-action " + " ".join(sources)))
    return {
        "Content-Security-Policy": policy,
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
    }


class Pages:
    """Renders the templates; one per app, built by create_app."""

    def __init__(self, *, service_name: str = "auth_service") -> None:
        self._env = Environment(
            loader=PackageLoader("auth_service.api.pages", "templates"),
            autoescape=True,  # every template, whatever its file name
            undefined=StrictUndefined,  # a missing variable is a bug, not an empty string
            auto_reload=False,
        )
        self._service_name = service_name
        self.stylesheet = resources.files(__package__).joinpath("static/pages.css").read_bytes()
        digest = hashlib.sha256(self.stylesheet).hexdigest()[:16]
        self.stylesheet_url = f"{STYLESHEET_PATH}?v={digest}"

    def render(
        self,
        template: str,
        *,
        status_code: int = 200,
        form_targets: Iterable[str] = (),
        **context: Any,
    ) -> HTMLResponse:
        """The page `template` filled with `context`, with the page headers."""
        html = self._env.get_template(template).render(
            service_name=self._service_name, stylesheet=self.stylesheet_url, **context
        )
        return HTMLResponse(html, status_code=status_code, headers=page_headers(form_targets))

    def error(
        self, *, title: str, message: str, code: str | None = None, status_code: int = 400
    ) -> HTMLResponse:
        """The HTML error page (never a redirect: the target may be the attacker's)."""
        return self.render(
            "error.html", status_code=status_code, title=title, message=message, code=code
        )

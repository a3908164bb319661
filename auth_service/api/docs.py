"""The interactive docs stay on this origin: a Content-Security-Policy on their pages.

Swagger UI, ReDoc and the favicon are served from the fastapi-offline wheel, but the ReDoc
bundle still hard-codes a logo on a CDN. The policy makes the browser load nothing from
elsewhere (no request is even attempted), whatever a future asset version references.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DOCS_CONTENT_SECURITY_POLICY", "DocsSameOriginOnly"]

# Swagger UI and ReDoc start from an inline <script>; ReDoc runs its search in a blob: worker;
# both use data: images. Everything else ('self' only) comes from this service.
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class DocsSameOriginOnly:
    """Add the same-origin Content-Security-Policy to the responses of the docs pages."""

    def __init__(self, app: ASGIApp, *, paths: frozenset[str]) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    *message.get("headers", []),
                    (b"content-security-policy", DOCS_CONTENT_SECURITY_POLICY.encode()),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_policy)

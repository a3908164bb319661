"""The management port's app (probes and metrics), and the ASGI app serving both ports.

`/metrics` says how many logins failed and whether refresh tokens were replayed, and
`/readyz` what is down: operators' business, not the internet's. They are served only on
AUTH_MANAGEMENT_PORT, which the load balancer does not forward; `/healthz` is on both.
One uvicorn server listens on both sockets (so graceful shutdown and workers cover both)
and `PortDispatch` routes each connection by the local port it arrived on.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from auth_service import __version__
from auth_service.api.routes import health

__all__ = ["PortDispatch", "create_management_app"]


def create_management_app(public: FastAPI) -> FastAPI:
    """healthz, readyz and metrics over the runtime that `public`'s lifespan holds."""
    app = FastAPI(
        title="auth_service management",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.public = public
    app.router.routes.extend(health.management_router.routes)
    return app


class PortDispatch:
    """Connections to `management_port` go to `management`, all others (and the lifespan)
    to `public`."""

    def __init__(self, public: FastAPI, *, management_port: int) -> None:
        self.public = public
        self.management: ASGIApp = create_management_app(public)
        self.management_port = management_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server") if scope["type"] != "lifespan" else None
        if server is not None and server[1] == self.management_port:
            await self.management(scope, receive, send)
        else:
            await self.public(scope, receive, send)

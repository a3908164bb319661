"""A resource service that trusts auth_service tokens: verify locally, optionally introspect.

Run it next to auth_service:

    AUTH_ISSUER_URL=http://127.0.0.1:8000 .venv/bin/uvicorn --factory \
        examples.resource_service.app:create_app_from_env --port 8001

Set RESOURCE_CLIENT_ID / RESOURCE_CLIENT_SECRET (a confidential client granted
introspection: `auth-service clients add resource-server --confidential --grants
--introspection`) to make logout bite within seconds instead of at token expiry.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI

from auth_service.verify import Introspector, TokenVerifier, VerifiedToken, require_token


def create_app(verifier: TokenVerifier) -> FastAPI:
    """The example service for one verifier (tests pass their own)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await verifier.aclose()

    app = FastAPI(title="resource_service", lifespan=lifespan)
    # The two lines a protected route needs: a verifier (above) and this dependency.
    profile = Depends(require_token(verifier, scopes=["profile"]))

    @app.get("/hello")
    async def hello(token: Annotated[VerifiedToken, profile]) -> dict[str, str]:
        """Greets the caller by the subject of their token."""
        return {"hello": token.subject, "client": token.client_id}

    @app.get("/public")
    async def public() -> dict[str, str]:
        """Needs no token."""
        return {"status": "ok"}

    return app


def create_app_from_env() -> FastAPI:
    """Configuration from the environment, for uvicorn --factory."""
    client_id = os.environ.get("RESOURCE_CLIENT_ID")
    secret = os.environ.get("RESOURCE_CLIENT_SECRET")
    introspector = Introspector(client_id, secret) if client_id and secret else None
    verifier = TokenVerifier(
        os.environ["AUTH_ISSUER_URL"],
        audience=os.environ.get("AUTH_AUDIENCE", "api"),
        introspector=introspector,
    )
    return create_app(verifier)

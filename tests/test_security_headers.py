"""Headers every response carries, and the docs pages' Content-Security-Policy."""

from __future__ import annotations

import httpx
import pytest

from auth_service.api.docs import DOCS_CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/healthz", 200),
        ("GET", "/.well-known/jwks.json", 200),
        ("GET", "/openapi.json", 200),
        ("GET", "/docs", 200),
        ("GET", "/docs/oauth2-redirect", 200),
        ("GET", "/nope", 404),
        ("POST", "/token", 400),
        ("GET", "/users/me", 401),
        ("PUT", "/users/me", 405),
    ],
)
async def test_every_response_forbids_content_sniffing(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_docs_pages_have_the_same_origin_policy(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == DOCS_CONTENT_SECURITY_POLICY

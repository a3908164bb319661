"""Discovery documents: the JWKS (RFC 7517) and server metadata (RFC 8414).

Both are serialised once at start and served from memory.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from auth_service.api.schemas import JWKSBody

__all__ = ["router"]

router = APIRouter(tags=["discovery"])


@router.get(
    "/.well-known/jwks.json",
    response_model=JWKSBody,
    summary="Public signing keys",
    response_class=Response,
    responses={200: {"content": {"application/json": {}}, "model": JWKSBody}},
)
async def jwks(request: Request) -> Response:
    """Public keys that verify our access tokens, cacheable by other services."""
    documents = request.app.state.documents
    return Response(documents.jwks, media_type="application/json", headers=documents.jwks_headers)


@router.get(
    "/.well-known/oauth-authorization-server",
    summary="Authorization server metadata",
    response_class=Response,
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def metadata(request: Request) -> Response:
    """RFC 8414 metadata: issuer, endpoints, supported grants, scopes and algorithms."""
    documents = request.app.state.documents
    return Response(
        documents.metadata, media_type="application/json", headers=documents.metadata_headers
    )


@router.get(
    "/.well-known/openid-configuration",
    summary="OpenID Provider metadata",
    response_class=Response,
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
async def openid_configuration(request: Request) -> Response:
    """OpenID Connect Discovery 1.0 §3: endpoints, algorithms, claims, prompt values."""
    documents = request.app.state.documents
    return Response(
        documents.openid_configuration,
        media_type="application/json",
        headers=documents.metadata_headers,
    )

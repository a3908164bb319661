"""The pages' own stylesheet, served by the service (no CDN, no inline styles)."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request, Response

from auth_service.api.pages import STYLESHEET_PATH, Pages

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


@router.get(STYLESHEET_PATH)
async def stylesheet(request: Request) -> Response:
    """The CSS of every page; its URL carries its hash, so it may be cached for long."""
    pages = cast(Pages, request.app.state.pages)
    return Response(
        pages.stylesheet,
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )

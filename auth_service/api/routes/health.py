"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from auth_service.api.schemas import HealthBody
from auth_service.services.health import check_readiness

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthBody, summary="Liveness")
async def healthz() -> HealthBody:
    """The process is up and its event loop answers."""
    return HealthBody(status="ok")


@router.get(
    "/readyz",
    response_model=HealthBody,
    summary="Readiness",
    responses={503: {"model": HealthBody, "description": "a dependency is unreachable"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready when every dependency answers; 503 names what failed."""
    checks = await check_readiness(
        request.app.state.services.db, request.app.state.services.revocations
    )
    ready = all(state == "ok" for state in checks.values())
    body = HealthBody(status="ok" if ready else "unavailable", checks=checks)
    if ready:
        return JSONResponse(body.model_dump())
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """HTTP, login, session, revocation, hashing and dependency metrics (text format)."""
    return Response(
        generate_latest(request.app.state.services.audit.registry), media_type=CONTENT_TYPE_LATEST
    )

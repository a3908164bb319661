"""Liveness, readiness and metrics: `/healthz` on both ports, the rest on the management port."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from auth_service.api.schemas import HealthBody
from auth_service.drain import PROCESS_DRAIN
from auth_service.metrics import CONTENT_TYPE_LATEST, exposition
from auth_service.services.health import check_readiness

__all__ = ["management_router", "router"]

router = APIRouter(tags=["health"])
management_router = APIRouter(tags=["management"])


@router.get("/healthz", response_model=HealthBody, summary="Liveness")
@management_router.get("/healthz", response_model=HealthBody, summary="Liveness")
async def healthz() -> HealthBody:
    """The process is up and its event loop answers."""
    return HealthBody(status="ok")


@management_router.get(
    "/readyz",
    response_model=HealthBody,
    summary="Readiness",
    responses={503: {"model": HealthBody, "description": "unready or draining"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Ready when every dependency answers, the schema is current and the process is not
    draining; 503 names what failed."""
    if PROCESS_DRAIN.draining:  # told to stop: the load balancer should move traffic away
        body = HealthBody(status="draining")
        return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})
    services = request.app.state.public.state.services
    checks = await check_readiness(services.db, services.revocations)
    ready = all(value == "ok" for value in checks.values())
    body = HealthBody(status="ok" if ready else "unavailable", checks=checks)
    if ready:
        return JSONResponse(body.model_dump())
    return JSONResponse(body.model_dump(), status_code=503, headers={"Retry-After": "1"})


@management_router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """HTTP, login, session, revocation, hashing, process and dependency metrics (text)."""
    state = request.app.state.public.state
    await state.runtime_metrics.sample()
    return Response(exposition(state.services.audit.registry), media_type=CONTENT_TYPE_LATEST)

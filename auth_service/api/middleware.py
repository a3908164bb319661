"""ASGI middleware: cap and time request bodies before anything buffers them."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from auth_service.logs import client_ip_var, request_id_var
from auth_service.metrics import LATENCY_BUCKETS

__all__ = ["BodySizeLimit", "RequestContext"]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Route templates are finite, but methods and statuses come from clients and handlers.
MAX_METRIC_SERIES = 1024


class BodySizeLimit:
    """Answer 413 when the declared or the streamed body exceeds `max_bytes`, and 408 when
    it has not fully arrived `timeout_seconds` after the headers.

    The body is read (bounded in size and time) before the app runs and replayed to it, so
    a chunked upload without Content-Length is refused before any parser buffers it, no
    parser can turn the refusal into a different error, and a client trickling its body
    holds a connection for at most the timeout.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, timeout_seconds: float = 15.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_seconds = timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await _reject(send, 413, "the request body is too large")
                    return
                declared = declared or int(value) > 0
            elif name == b"transfer-encoding":
                chunked = True
        if not (declared or chunked):
            # Neither length nor chunked: HTTP/1.1 has no body (RFC 9112 §6.3), nothing to
            # bound; most requests (every GET) skip the timer and the replay.
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.timeout_seconds):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        return  # the client went away before sending its body
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_bytes:
                        await _reject(send, 413, "the request body is too large")
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await _reject(send, 408, "the request body took too long")
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _reject(send: Send, status: int, description: str) -> None:
    """An invalid_request answer that closes the connection (the body was not all read)."""
    body = json.dumps({"error": "invalid_request", "error_description": description}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestContext:
    """Per request: an id (a sane X-Request-ID, or a new one) echoed in the response and put
    with the client address in the logging context, `X-Content-Type-Options: nosniff` on the
    response; then counts and latency by method, route template and status.

    One layer with one send wrapper: each ASGI layer costs every request a few calls.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        client_ip: Callable[[Request], str | None],
        registry: CollectorRegistry,
    ) -> None:
        self.app = app
        self._client_ip = client_ip
        self._requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self._latency = Histogram(
            "http_request_duration_seconds",
            "HTTP request latency by method and route",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # Labelled children by (method, route, status): `labels()` takes a lock per call.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _offered_request_id(scope) or uuid.uuid4().hex
        id_token = request_id_var.set(request_id)
        ip_token = client_ip_var.set(self._client_ip(Request(scope)))
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                    # No response is to be sniffed into another type (HTML, script).
                    (b"x-content-type-options", b"nosniff"),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(id_token)
            client_ip_var.reset(ip_token)
            route = getattr(scope.get("route"), "path", "unmatched")
            self._observe(scope["method"], route, status, time.perf_counter() - started)

    def _observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = (
                self._requests.labels(method, route, str(status)),
                self._latency.labels(method, route),
            )
            if len(self._series) < MAX_METRIC_SERIES:
                self._series[key] = series
        series[0].inc()
        series[1].observe(seconds)


def _offered_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            offered = value.decode("latin-1")
            return offered if _REQUEST_ID.fullmatch(offered) else None
    return None

"""uvicorn's httptools protocol hardened for production, and the draining server.

- TCP_NODELAY: with `--workers N` uvicorn's supervisor binds the listening socket with
  proto 0, so asyncio never sets TCP_NODELAY on accepted connections and Nagle's algorithm
  meets delayed ACKs (a delayed-ACK timeout added per response). It is set in `connection_made`.
- A header cap: httptools buffers request headers without any limit (a 2 MB header was
  accepted). A request head (request line, headers and the blank line) of more than
  `MAX_HEADER_BYTES` gets 431 and the connection is closed before the parser buffers more.
- A header read timeout: uvicorn times out only idle keep-alive connections, after a
  response; a connection that never sends a complete head was held for ever. The head must
  arrive within `header_timeout` of the connection opening (first request) or of its
  first byte (later requests), else 408 (or a silent close if nothing was sent).
- nosniff on uvicorn's own answers: the 400 for an unparseable request and the 503 past
  the connection cap never pass the app's middleware, so they carry the header here.
- A drain: on SIGTERM the server first fails readiness (drain.py) and keeps serving for
  `drain_seconds`, so a load balancer's health checks move traffic away; only then does
  uvicorn's graceful shutdown close the listener and idle keep-alive connections. A second
  SIGTERM changes nothing, SIGINT stops at once; the process exits 0 after a drain.

The body read timeout is the app's (api/middleware.py: BodySizeLimit); the keep-alive
timeout and the connection cap (503 past it) are uvicorn's own options.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from auth_service.drain import PROCESS_DRAIN

__all__ = [
    "DEFAULT_HEADER_TIMEOUT_SECONDS",
    "MAX_HEADER_BYTES",
    "DrainingServer",
    "ServingConfig",
    "ServingProtocol",
]

MAX_HEADER_BYTES = 32 * 1024
DEFAULT_HEADER_TIMEOUT_SECONDS = 10.0
_SLICE = 8 * 1024

log = logging.getLogger(__name__)


def _response(status: bytes, description: bytes) -> bytes:
    body = b'{"error": "invalid_request", "error_description": "' + description + b'"}'
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\n"
        b"x-content-type-options: nosniff\r\n"
        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


_TOO_LARGE = _response(b"431 Request Header Fields Too Large", b"the request headers are too large")
_TIMED_OUT = _response(b"408 Request Timeout", b"the request headers took too long")
_BAD_REQUEST = _response(b"400 Bad Request", b"the request is not valid HTTP")
_NOSNIFF = [(b"x-content-type-options", b"nosniff")]


async def _over_capacity(scope: Any, receive: Any, send: Any) -> None:
    """uvicorn's connection-cap 503, with nosniff like every other response."""
    body = b'{"error": "temporarily_unavailable", "error_description": "too many connections"}'
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"1"), *_NOSNIFF]
    headers.append((b"content-length", str(len(body)).encode()))
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class ServingConfig(uvicorn.Config):
    """uvicorn's Config plus the header read timeout ServingProtocol enforces and the drain
    period DrainingServer keeps serving for after SIGTERM."""

    def __init__(
        self,
        app: Any,
        *,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT_SECONDS,
        drain_seconds: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(app, **options)
        self.header_timeout = header_timeout
        self.drain_seconds = drain_seconds


class DrainingServer(uvicorn.Server):
    """uvicorn's Server that, on SIGTERM, fails readiness and serves on for the drain period
    before its graceful shutdown."""

    _drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM:
            super().handle_exit(sig, frame)  # SIGINT: stop now (a second one forces it)
            return
        # Not recorded for re-raising after shutdown: a drained process exits 0.
        if PROCESS_DRAIN.draining or self.should_exit:
            return  # e.g. from the supervisor and from a process-group kill: one drain
        PROCESS_DRAIN.begin()
        drain = getattr(self.config, "drain_seconds", 0.0)
        if drain <= 0:
            self.should_exit = True
            return
        self._drain_deadline = time.monotonic() + drain
        log.warning("SIGTERM: failing readiness, draining for %s s before shutdown", drain)

    async def on_tick(self, counter: int) -> bool:
        deadline = self._drain_deadline
        if deadline is not None and time.monotonic() >= deadline:
            self.should_exit = True
        return await super().on_tick(counter)


class ServingProtocol(HttpToolsProtocol):
    """HttpToolsProtocol without Nagle's algorithm, with bounded and timed request heads."""

    _header_bytes = 0
    _in_headers = True
    _request_begun = False
    _header_timer: asyncio.TimerHandle | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The cap is applied in on_headers_complete with a 503 that says nosniff.
        self._connection_cap, self.limit_concurrency = self.limit_concurrency, None

    def send_400_response(self, msg: str) -> None:
        self.transport.write(_BAD_REQUEST)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # While a head is being read, the parser gets at most what is left of its budget,
        # so a head of exactly MAX_HEADER_BYTES passes and one byte more is refused. Each
        # request's budget starts with the first read after its predecessor completed; a
        # pipelined request sharing that read has the shared bytes uncounted.
        start = 0
        while start < len(data):
            if self._in_headers:
                budget = MAX_HEADER_BYTES - self._header_bytes
                if budget <= 0:
                    self._cancel_header_timer()
                    self.transport.write(_TOO_LARGE)
                    self.transport.close()
                    return
                piece = data[start : start + budget]
                self._header_bytes += len(piece)
            else:
                piece = data[start : start + _SLICE]
            super().data_received(piece)
            if self.transport.is_closing():
                return
            start += len(piece)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._request_begun = True
        if self._header_timer is None:  # a later request: its head is timed from here
            self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._in_headers = False
        self._request_begun = False
        cap, app = self._connection_cap, self.app
        if cap is not None and (len(self.connections) >= cap or len(self.tasks) >= cap):
            self.logger.warning("Exceeded concurrency limit.")
            self.app = _over_capacity
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # The next byte begins the next request's head, with a full budget.
        self._in_headers = True
        self._header_bytes = 0

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        timeout = getattr(self.config, "header_timeout", DEFAULT_HEADER_TIMEOUT_SECONDS)
        self._header_timer = self.loop.call_later(timeout, self._header_timeout_expired)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout_expired(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head arrives while its predecessor is still being answered.
            self._arm_header_timer()
            return
        if self._request_begun:
            self.transport.write(_TIMED_OUT)
        self.transport.close()

"""uvicorn's httptools protocol with two fixes for production: TCP_NODELAY and a header cap.

- With `--workers N` uvicorn's supervisor binds the listening socket with proto 0, so
  asyncio never sets TCP_NODELAY on accepted connections and Nagle's algorithm meets
  delayed ACKs (about 40 ms added per response on this kind of machine). The option is set
  in `connection_made`, whatever created the socket.
- httptools buffers request headers without any limit (a 2 MB header was accepted). Bytes
  received before the headers are complete are counted, and past `MAX_HEADER_BYTES` the
  connection gets 431 and is closed before the parser buffers more.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEADER_BYTES", "ServingProtocol"]

MAX_HEADER_BYTES = 32 * 1024
_SLICE = 8 * 1024
_BODY = b'{"error": "invalid_request", "error_description": "the request headers are too large"}'
_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY
)


class ServingProtocol(HttpToolsProtocol):
    """HttpToolsProtocol without Nagle's algorithm and with bounded request headers."""

    _header_bytes = 0
    _in_headers = True

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        # Feed the parser in slices so the count follows message boundaries: pipelined
        # requests on one connection each get a full budget (give or take one slice).
        for start in range(0, len(data), _SLICE):
            piece = data[start : start + _SLICE]
            if self._in_headers:
                self._header_bytes += len(piece)
                if self._header_bytes > MAX_HEADER_BYTES:
                    self.transport.write(_TOO_LARGE)
                    self.transport.close()
                    return
            super().data_received(piece)
            if self.transport.is_closing():
                return

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

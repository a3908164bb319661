"""The production HTTP protocol: bounded request headers, keep-alive still intact."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from auth_service.serving import MAX_HEADER_BYTES
from tests.processes import Replica, running_service, service_env

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    directory = tmp_path_factory.mktemp("serving")
    with running_service("serving", service_env(directory), directory) as process:
        yield process


def exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, read until the server closes or 2 s pass."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # The server may close before reading everything; its answer is read below.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        sock.settimeout(2)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return received


def get(header_bytes: int, *, keep_alive: bool = False) -> bytes:
    connection = b"keep-alive" if keep_alive else b"close"
    return (
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: " + connection + b"\r\n"
        b"X-Padding: " + b"a" * header_bytes + b"\r\n\r\n"
    )


def head_of(size: int) -> bytes:
    """A GET whose head (request line, headers, blank line) is exactly `size` bytes."""
    return get(size - len(get(0)))


def test_ordinary_headers_are_served(server: Replica) -> None:
    assert exchange(server.port, get(8_000)).startswith(b"HTTP/1.1 200 OK")


def test_a_head_of_exactly_the_cap_is_served(server: Replica) -> None:
    assert len(head_of(MAX_HEADER_BYTES)) == MAX_HEADER_BYTES == 32 * 1024
    assert exchange(server.port, head_of(MAX_HEADER_BYTES)).startswith(b"HTTP/1.1 200 OK")


@pytest.mark.parametrize("size", [MAX_HEADER_BYTES + 1, 200_000, 2_000_000])
def test_oversized_headers_get_431_and_the_connection_closes(server: Replica, size: int) -> None:
    answer = exchange(server.port, head_of(size))
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large")
    assert answer.endswith(b'"the request headers are too large"}')


def test_keep_alive_requests_each_get_a_fresh_header_budget(server: Replica) -> None:
    # Three requests of 20 KB headers on one connection: 60 KB in all, each under the cap.
    pipelined = get(20_000, keep_alive=True) * 2 + get(20_000)
    answer = exchange(server.port, pipelined)
    assert answer.count(b"HTTP/1.1 200 OK") == 3


def test_the_access_log_omits_query_strings(server: Replica) -> None:
    # Clients put secrets in query strings (`?password=`, `?access_token=`); never log them.
    target = "/access-log-probe?access_token=eyJsecret.token&password=hunter2-secret"
    request = f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    assert exchange(server.port, request).startswith(b"HTTP/1.1 404 Not Found")
    deadline = time.monotonic() + 5
    while "access-log-probe" not in server.output():
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)
    output = server.output()
    assert "hunter2-secret" not in output
    assert "eyJsecret" not in output
    assert "GET /access-log-probe HTTP/1.1" in output


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    ],
)
def test_unparseable_requests_get_400_that_forbids_sniffing(
    server: Replica, request_bytes: bytes
) -> None:
    # uvicorn answers these itself, before any app middleware sees them.
    head = exchange(server.port, request_bytes).split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 400 bad request")
    assert b"\r\nx-content-type-options: nosniff" in head


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz", "/no-such-page"])
def test_management_port_responses_forbid_sniffing(server: Replica, path: str) -> None:
    response = httpx.get(server.management_url + path, timeout=5.0)
    assert response.headers["x-content-type-options"] == "nosniff"

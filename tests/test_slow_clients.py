"""Slow clients cannot hold the service: heads, bodies and idle connections are timed, and
past the connection cap requests are answered 503 (a real `serve` process)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import Replica, running_service, service_env

pytestmark = pytest.mark.slow

TIMEOUT = "1"  # seconds, for heads, bodies and keep-alive alike
SLOW_CONNECTIONS = 300
# Generous: the timeouts are 1 s, the machine is shared.
CLOSED_WITHIN_SECONDS = 15.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    directory = tmp_path_factory.mktemp("slow-clients")
    env = service_env(
        directory,
        AUTH_HTTP_HEADER_TIMEOUT_SECONDS=TIMEOUT,
        AUTH_HTTP_BODY_TIMEOUT_SECONDS=TIMEOUT,
        AUTH_HTTP_KEEP_ALIVE_TIMEOUT_SECONDS=TIMEOUT,
        AUTH_HTTP_MAX_CONNECTIONS="1000",
    )
    with running_service("slow-clients", env, directory) as process:
        yield process


@contextlib.contextmanager
def connections(port: int, count: int, first_bytes: bytes) -> Iterator[list[socket.socket]]:
    """`count` connections that each sent `first_bytes` and then nothing; closed after."""
    opened: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if first_bytes:
                sock.sendall(first_bytes)
            opened.append(sock)
        yield opened
    finally:
        for sock in opened:
            sock.close()


def read_until_closed(sock: socket.socket, deadline: float) -> bytes | None:
    """Everything the server sends until it closes; None if it is still open at `deadline`."""
    received = b""
    while True:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk


def assert_all_closed(opened: list[socket.socket], answer: bytes) -> None:
    deadline = time.monotonic() + CLOSED_WITHIN_SECONDS
    answers = [read_until_closed(sock, deadline) for sock in opened]
    still_open = sum(1 for received in answers if received is None)
    assert still_open == 0, f"{still_open} of {len(opened)} slow connections still open"
    assert all(received is not None and received.startswith(answer) for received in answers)


def test_partial_heads_do_not_starve_healthz_and_are_closed(server: Replica) -> None:
    partial = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a"
    with connections(server.port, SLOW_CONNECTIONS, partial) as slow:
        started = time.monotonic()
        response = httpx.get(f"{server.url}/healthz", timeout=1.0)
        assert response.status_code == 200
        assert time.monotonic() - started < 1.0
        assert_all_closed(slow, b"HTTP/1.1 408 Request Timeout")


def test_connections_that_send_nothing_are_closed(server: Replica) -> None:
    with connections(server.port, 20, b"") as idle:
        assert_all_closed(idle, b"")


def test_a_partial_body_gets_408_and_the_connection_closes(server: Replica) -> None:
    head = (
        b"POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\n"
    )
    with connections(server.port, 20, head + b"grant_type") as slow:
        assert_all_closed(slow, b"HTTP/1.1 408 Request Timeout")


def test_idle_keep_alive_connections_are_closed(server: Replica) -> None:
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with connections(server.port, 20, request) as kept:
        deadline = time.monotonic() + CLOSED_WITHIN_SECONDS
        for sock in kept:
            received = read_until_closed(sock, deadline)
            assert received is not None, "an idle keep-alive connection is still open"
            assert received.startswith(b"HTTP/1.1 200 OK")
            assert received.count(b"HTTP/1.1") == 1


def test_past_the_connection_cap_requests_get_503(tmp_path: Path) -> None:
    directory = tmp_path
    env = service_env(
        directory,
        AUTH_HTTP_HEADER_TIMEOUT_SECONDS="60",
        AUTH_HTTP_MAX_CONNECTIONS="16",
    )
    with running_service("capped", env, directory) as capped:
        with connections(capped.port, 16, b""):
            response = httpx.get(f"{capped.url}/healthz", timeout=5.0)
            assert response.status_code == 503
            # uvicorn sends this 503 itself, past the app's middleware.
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["retry-after"] == "1"
        # The held connections are gone: requests are served again.
        deadline = time.monotonic() + CLOSED_WITHIN_SECONDS
        while httpx.get(f"{capped.url}/healthz", timeout=5.0).status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)

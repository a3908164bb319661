"""A PostgreSQL that refuses connections is DatabaseUnavailable (503) on every path, never 500.

While PostgreSQL starts, stops or is full it answers a new connection with a FATAL error
(57P03 starting up / shutting down, 53300 too many connections, 57P01 admin shutdown).
A fake server here speaks just enough of the protocol to refuse each way, so the
repositories' path (db/postgres.py's PgConnection: the pool's own checkout), the ORM path
and the HTTP mapping are all shown to answer 503 + Retry-After; a closed port too.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from auth_service.api.errors import install_error_handlers
from auth_service.db import create_engine
from auth_service.db.postgres import PgConnection
from auth_service.db.statements import Statement
from auth_service.errors import DatabaseUnavailable
from auth_service.models import User
from auth_service.repositories.postgres import PgDatabase

REFUSALS = {
    "starting up": ("57P03", "the database system is starting up"),
    "shutting down": ("57P03", "the database system is shutting down"),
    "too many connections": ("53300", "sorry, too many clients already"),
    "admin shutdown": ("57P01", "terminating connection due to administrator command"),
}


def _error_response(code: str, message: str) -> bytes:
    fields = b"".join(
        kind + value.encode() + b"\0"
        for kind, value in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, reply: bytes) -> None:
    """Decline SSL, read the startup message, answer it with the FATAL error, close."""
    try:
        while True:
            (length,) = struct.unpack("!I", await reader.readexactly(4))
            payload = await reader.readexactly(length - 4)
            if payload[:4] == struct.pack("!I", 80877103):  # SSLRequest
                writer.write(b"N")
                await writer.drain()
                continue
            writer.write(reply)
            await writer.drain()
            return
    except (asyncio.IncompleteReadError, ConnectionError):
        return
    finally:
        writer.close()


@pytest.fixture(params=sorted(REFUSALS))
async def refusing_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    code, message = REFUSALS[request.param]
    reply = _error_response(code, message)
    server = await asyncio.start_server(lambda r, w: _refuse(r, w, reply), host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/refused"
    finally:
        server.close()
        await server.wait_closed()


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port}/refused"


async def _hot_path(url: str) -> None:
    engine = create_engine(url)
    try:
        async with PgConnection(engine) as db:
            await db.rows(Statement(select(User.id)), {})
    finally:
        await engine.dispose()


async def _orm_path(url: str) -> None:
    """The engine's own connections (readiness: SELECT 1, the schema revision)."""
    engine = create_engine(url)
    try:
        await PgDatabase(engine).ping()
    finally:
        await engine.dispose()


async def test_hot_path_checkout_refused_is_database_unavailable(refusing_url: str) -> None:
    with pytest.raises(DatabaseUnavailable):
        await _hot_path(refusing_url)


async def test_orm_path_connect_refused_is_database_unavailable(refusing_url: str) -> None:
    with pytest.raises(DatabaseUnavailable):
        await _orm_path(refusing_url)


async def test_closed_port_on_the_hot_path_is_database_unavailable(closed_port_url: str) -> None:
    with pytest.raises(DatabaseUnavailable):
        await _hot_path(closed_port_url)


async def test_closed_port_on_the_orm_path_is_database_unavailable(closed_port_url: str) -> None:
    # asyncpg's bare OSError, which SQLAlchemy passes on unwrapped, is translated by the
    # database layer too: api/errors.py maps domain errors only.
    with pytest.raises(DatabaseUnavailable):
        await _orm_path(closed_port_url)


async def _answers(url: str) -> dict[str, httpx.Response]:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/hot")
    async def hot() -> None:
        await _hot_path(url)

    @app.get("/orm")
    async def orm() -> None:
        await _orm_path(url)

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return {path: await client.get(path) for path in ("/hot", "/orm")}


def _assert_503(answers: dict[str, httpx.Response]) -> None:
    for path, response in answers.items():
        assert response.status_code == 503, (path, response.text)
        assert int(response.headers["retry-after"]) >= 1


async def test_a_refusal_on_any_path_answers_503_with_retry_after(refusing_url: str) -> None:
    """Whatever route met the refusal (either path), the client gets 503, not 500."""
    _assert_503(await _answers(refusing_url))


async def test_a_closed_port_on_any_path_answers_503_with_retry_after(closed_port_url: str) -> None:
    _assert_503(await _answers(closed_port_url))

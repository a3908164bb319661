"""Domain errors are answered by the class nearest in their MRO; driver errors never reach
the HTTP mapping: the database layer raises DatabaseUnavailable itself."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from auth_service.api.errors import install_error_handlers
from auth_service.db.postgres import PgConnection
from auth_service.db.statements import Statement
from auth_service.errors import (
    AuthServiceError,
    DatabaseUnavailable,
    InvalidClient,
    OAuthError,
    ServiceUnavailable,
)


class _ClientRefusedAgain(InvalidClient):
    """A kind listed nowhere: answered as its nearest listed base, InvalidClient."""


class _AnotherGrantFailure(OAuthError):
    code = "invalid_grant"


class _UnlistedFailure(AuthServiceError):
    code = "unlisted"


async def _answer(raised: BaseException) -> httpx.Response:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/")
    async def route() -> None:
        raise raised

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get("/")


async def test_an_unlisted_subclass_is_answered_as_its_nearest_listed_base() -> None:
    client = await _answer(_ClientRefusedAgain())
    assert client.status_code == 401
    assert client.headers["www-authenticate"] == 'Basic realm="auth_service"'
    assert client.headers["cache-control"] == "no-store"
    grant = await _answer(_AnotherGrantFailure())
    assert (grant.status_code, grant.json()["error"]) == (400, "invalid_grant")
    assert grant.headers["cache-control"] == "no-store"
    assert "www-authenticate" not in grant.headers
    assert (await _answer(_UnlistedFailure())).status_code == 500


async def test_service_unavailable_kinds_carry_retry_after() -> None:
    answer = await _answer(DatabaseUnavailable())
    assert answer.status_code == 503
    assert answer.headers["retry-after"] == str(ServiceUnavailable.retry_after_seconds)
    assert answer.json() == {
        "error": "temporarily_unavailable",
        "error_description": "the database is unavailable, retry shortly",
    }


async def test_an_os_error_from_a_route_is_an_internal_error_not_the_database() -> None:
    # No global OSError handler: a file or socket fault elsewhere is not "database unavailable".
    answer = await _answer(PermissionError("keys directory"))
    assert answer.status_code == 500
    assert answer.json() == {"error": "server_error", "error_description": "internal error"}
    assert "retry-after" not in answer.headers


async def test_a_sqlalchemy_operational_error_from_a_route_is_an_internal_error() -> None:
    answer = await _answer(OperationalError("SELECT 1", {}, Exception("untranslated")))
    assert answer.status_code == 500


async def test_an_exhausted_pool_is_database_unavailable(postgres_url: str) -> None:
    engine = create_async_engine(postgres_url, pool_size=1, max_overflow=0, pool_timeout=0.2)
    try:
        async with PgConnection(engine) as held:
            await held.rows(Statement(select(1)), {})
            with pytest.raises(DatabaseUnavailable) as raised:
                async with PgConnection(engine):
                    pass
        assert type(raised.value.__cause__).__name__ == "TimeoutError"
        async with PgConnection(engine) as again:  # the held connection went back
            assert await again.rows(Statement(select(1)), {}) == [(1,)]
    finally:
        await engine.dispose()

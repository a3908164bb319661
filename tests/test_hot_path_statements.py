"""Login and refresh cost what they did: on PostgreSQL one autocommitted statement per
read or write (no BEGIN/COMMIT); on SQLite one worker job each, never a transaction
that reserves the worker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from auth_service.db.postgres import PgConnection
from auth_service.db.sqlite_worker import SQLiteWorker
from auth_service.db.statements import Statement
from tests.conftest import password_grant, register
from tests.oidc_helpers import add_client, authorize, authorize_params, exchange, query


class Calls:
    """What reached the database driver layer, in order."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.transactions = 0

    def clear(self) -> None:
        self.statements.clear()
        self.transactions = 0


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    seen = Calls()
    pg_rows, pg_execute = PgConnection.rows, PgConnection.execute
    worker_rows, worker_transaction = SQLiteWorker.rows, SQLiteWorker.transaction
    worker_session = SQLiteWorker.session

    async def counted_pg_rows(
        self: PgConnection, statement: Statement, params: Mapping[str, Any]
    ) -> list[Sequence[Any]]:
        seen.statements.append(statement.compiled(self.dialect).sql.split()[0])
        return await pg_rows(self, statement, params)

    async def counted_pg_execute(self: PgConnection, sql: str) -> None:
        seen.statements.append(sql)
        await pg_execute(self, sql)

    async def counted_worker_rows(
        self: SQLiteWorker, statement: Statement, params: Mapping[str, Any]
    ) -> list[Sequence[Any]]:
        seen.statements.append(statement.compiled(self.dialect).sql.split()[0])
        return await worker_rows(self, statement, params)

    async def counted_worker_transaction(self: SQLiteWorker, work: Any) -> Any:
        seen.statements.append("JOB")
        return await worker_transaction(self, work)

    def counted_session(self: SQLiteWorker) -> Any:
        seen.transactions += 1
        return worker_session(self)

    monkeypatch.setattr(PgConnection, "rows", counted_pg_rows)
    monkeypatch.setattr(PgConnection, "execute", counted_pg_execute)
    monkeypatch.setattr(SQLiteWorker, "rows", counted_worker_rows)
    monkeypatch.setattr(SQLiteWorker, "transaction", counted_worker_transaction)
    monkeypatch.setattr(SQLiteWorker, "session", counted_session)
    return seen


async def test_login_and_refresh_keep_their_statement_counts(
    app: FastAPI, client: httpx.AsyncClient, calls: Calls, database_url: str
) -> None:
    await register(client)
    calls.clear()
    login = await password_grant(client)
    assert login.status_code == 200, login.text
    sqlite = database_url.startswith("sqlite")
    # The user lookup, opening the session with its first token, the scope re-check.
    assert calls.statements == ["SELECT", "JOB" if sqlite else "WITH", "SELECT"]
    assert calls.transactions == 0

    calls.clear()
    form = {"grant_type": "refresh_token", "refresh_token": login.json()["refresh_token"]}
    refreshed = await client.post("/token", data=form)
    assert refreshed.status_code == 200, refreshed.text
    # The token's family, then the rotation (claim, successor, session touch) as one.
    assert calls.statements == (["SELECT", "JOB"] if sqlite else ["SELECT", "WITH"])
    assert calls.transactions == 0


async def test_code_flow_steps_cost_at_most_three_statements(
    app: FastAPI, client: httpx.AsyncClient, calls: Calls, database_url: str
) -> None:
    """The browser-less code flow of the bench: authorize with a session cookie, then the
    token exchange; each step at most three statements, none a reserved transaction."""
    await register(client)
    rp = await add_client(app)
    await authorize(client, rp, authorize_params(rp))  # logs the browser in once
    sqlite = database_url.startswith("sqlite")

    calls.clear()
    sso = await client.get("/authorize", params=authorize_params(rp))
    code = query(sso.headers["location"])["code"]
    # The client, the browser session with its user and consent (one SELECT), the code.
    assert calls.statements == ["SELECT", "SELECT", "INSERT"]
    assert calls.transactions == 0

    calls.clear()
    token = await exchange(client, rp, code)
    assert token.status_code == 200, token.text
    assert "id_token" in token.json()
    # The client, the code's compare-and-set, the session with its first refresh token.
    assert calls.statements == ["SELECT", "UPDATE", "JOB" if sqlite else "WITH"]
    assert calls.transactions == 0

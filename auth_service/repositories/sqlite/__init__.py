"""Every repository on SQLite, and its unit of work: all of it on the one worker thread.

The worker's connection is the only one the service opens on the file, so there is one
writer: a call on its own is one worker job (writes group-committed with whatever else
was queued); a transaction reserves the worker's thread from BEGIN to COMMIT.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import select
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import make_url

from auth_service.db.engine import prepare_sqlite_file
from auth_service.db.migrate import schema_is_behind, sqlite_revisions
from auth_service.db.runner import SqlSpan
from auth_service.db.sqlite_worker import SQLiteWorker, WorkerSession
from auth_service.db.statements import Statement
from auth_service.repositories import PoolStatus
from auth_service.repositories.sqlite.oidc import SqliteAuthorizations, SqliteBrowserSessions
from auth_service.repositories.sqlite.sessions import SqliteSessions
from auth_service.repositories.sqlite.small import (
    SqliteClients,
    SqliteRevocations,
    SqliteServiceSecrets,
)
from auth_service.repositories.sqlite.users import SqliteHashSamples, SqliteUsers

__all__ = ["SqliteDatabase", "SqliteRepositories"]

_PING = Statement(select(1))


class SqliteRepositories:
    """The repositories on the worker (each call its own job) or on one of its sessions."""

    __slots__ = (
        "authorizations",
        "browser_sessions",
        "clients",
        "hash_samples",
        "revocations",
        "secrets",
        "sessions",
        "users",
    )

    def __init__(self, runner: SQLiteWorker | WorkerSession) -> None:
        self.users = SqliteUsers(runner)
        self.sessions = SqliteSessions(runner)
        self.revocations = SqliteRevocations(runner)
        self.clients = SqliteClients(runner)
        self.secrets = SqliteServiceSecrets(runner)
        self.hash_samples = SqliteHashSamples(runner)
        self.browser_sessions = SqliteBrowserSessions(runner)
        self.authorizations = SqliteAuthorizations(runner)


class SqliteDatabase(SqliteRepositories):
    """Database on SQLite: the worker thread is the only connection to the file."""

    __slots__ = ("_worker",)

    def __init__(self, url: str, *, span: SqlSpan | None = None) -> None:
        prepare_sqlite_file(url)
        worker = SQLiteWorker(make_url(url).database or "", SQLiteDialect_pysqlite(), span=span)
        super().__init__(worker)
        self._worker = worker

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteRepositories]:
        """BEGIN IMMEDIATE on the worker; COMMIT when the block ends, ROLLBACK if it raises."""
        async with self._worker.session() as session:
            yield SqliteRepositories(session)

    async def ping(self) -> None:
        """SELECT 1 on the worker's connection."""
        await self._worker.rows(_PING, {})

    async def schema_is_behind(self) -> bool:
        """Read the Alembic revision on the worker's connection."""
        return schema_is_behind(await self._worker.transaction(sqlite_revisions))

    def pool_status(self) -> PoolStatus:
        """No pool: one connection, busy while jobs wait for it."""
        queued = self._worker.queued
        return PoolStatus(size=1, checked_out=min(1, queued), queued=queued)

    async def close(self) -> None:
        """Finish what is queued and stop the worker's thread."""
        await self._worker.close()

"""Every repository on PostgreSQL, and its unit of work (db/postgres.py runs the SQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from auth_service.db.migrate import database_revisions, schema_is_behind
from auth_service.db.postgres import PgRunner, PgTransaction
from auth_service.db.runner import Runner, SqlSpan
from auth_service.repositories import PoolStatus
from auth_service.repositories.postgres.oidc import PgAuthorizations, PgBrowserSessions
from auth_service.repositories.postgres.sessions import PgSessions
from auth_service.repositories.postgres.small import PgClients, PgRevocations, PgServiceSecrets
from auth_service.repositories.postgres.users import PgHashSamples, PgUsers

__all__ = ["PgDatabase", "PgRepositories"]


class PgRepositories:
    """The repositories on one runner: autocommitted calls, or one transaction."""

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

    def __init__(self, runner: Runner) -> None:
        self.users = PgUsers(runner)
        self.sessions = PgSessions(runner)
        self.revocations = PgRevocations(runner)
        self.clients = PgClients(runner)
        self.secrets = PgServiceSecrets(runner)
        self.hash_samples = PgHashSamples(runner)
        self.browser_sessions = PgBrowserSessions(runner)
        self.authorizations = PgAuthorizations(runner)


class PgDatabase(PgRepositories):
    """Database on PostgreSQL: each call on its own autocommitted connection."""

    __slots__ = ("_engine", "_span")

    def __init__(self, engine: AsyncEngine, *, span: SqlSpan | None = None) -> None:
        super().__init__(PgRunner(engine, span=span))
        self._engine = engine
        self._span = span

    @property
    def engine(self) -> AsyncEngine:
        """The engine whose pool the repositories use (tracing instruments it)."""
        return self._engine

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgRepositories]:
        """BEGIN on one connection; COMMIT when the block ends, ROLLBACK if it raises."""
        async with PgTransaction(self._engine, span=self._span) as connection:
            yield PgRepositories(connection)

    async def ping(self) -> None:
        """SELECT 1 through SQLAlchemy (the readiness probe's round trip)."""
        async with self._engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def schema_is_behind(self) -> bool:
        """Read the Alembic revision through SQLAlchemy."""
        return schema_is_behind(await database_revisions(self._engine))

    def pool_status(self) -> PoolStatus:
        """The engine pool's size, checked-out and overflow connections."""
        pool = self._engine.sync_engine.pool

        def reading(attribute: str) -> int:
            value = getattr(pool, attribute, None)
            return max(0, int(value())) if callable(value) else 0

        return PoolStatus(
            size=reading("size"), checked_out=reading("checkedout"), overflow=reading("overflow")
        )

    async def close(self) -> None:
        """Close the engine's pooled connections."""
        await self._engine.dispose()

"""Users on PostgreSQL: the shared statements (sql_users.py) run by asyncpg (db/postgres.py)."""

from __future__ import annotations

from auth_service.repositories.sql_users import SqlHashSamples, SqlUsers

__all__ = ["PgHashSamples", "PgUsers"]


class PgUsers(SqlUsers):
    """UserRepository on PostgreSQL."""

    __slots__ = ()


class PgHashSamples(SqlHashSamples):
    """HashSampleRepository on PostgreSQL."""

    __slots__ = ()

"""Users on SQLite: the shared statements (sql_users.py) run on the worker thread."""

from __future__ import annotations

from auth_service.repositories.sql_users import SqlHashSamples, SqlUsers

__all__ = ["SqliteHashSamples", "SqliteUsers"]


class SqliteUsers(SqlUsers):
    """UserRepository on SQLite."""

    __slots__ = ()


class SqliteHashSamples(SqlHashSamples):
    """HashSampleRepository on SQLite."""

    __slots__ = ()

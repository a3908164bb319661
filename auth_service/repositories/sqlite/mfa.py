"""Second factors on SQLite: the shared statements (sql_mfa.py) on the worker thread."""

from __future__ import annotations

from sqlalchemy.dialects import sqlite

from auth_service.repositories.sql_mfa import SqlMfa, pending_upsert

__all__ = ["SqliteMfa"]

_PUT_PENDING = pending_upsert(sqlite.insert)


class SqliteMfa(SqlMfa):
    """MfaRepository on SQLite."""

    __slots__ = ()
    _put_pending = _PUT_PENDING

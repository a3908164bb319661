"""Link tokens and the outbox on SQLite: the worker thread is the one writer, so the
claiming UPDATE needs no lock clause (SQLite has none) to be atomic."""

from __future__ import annotations

from auth_service.repositories.sql_mail import SqlEmailTokens, SqlOutbox, claim_statement

__all__ = ["SqliteEmailTokens", "SqliteOutbox"]


class SqliteEmailTokens(SqlEmailTokens):
    """EmailTokenRepository on SQLite."""

    __slots__ = ()


class SqliteOutbox(SqlOutbox):
    """OutboxRepository on SQLite."""

    __slots__ = ()
    _CLAIM = claim_statement(skip_locked=False)

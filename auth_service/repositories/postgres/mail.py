"""Link tokens and the outbox on PostgreSQL: replicas claim with FOR UPDATE SKIP LOCKED."""

from __future__ import annotations

from auth_service.repositories.sql_mail import SqlEmailTokens, SqlOutbox, claim_statement

__all__ = ["PgEmailTokens", "PgOutbox"]


class PgEmailTokens(SqlEmailTokens):
    """EmailTokenRepository on PostgreSQL."""

    __slots__ = ()


class PgOutbox(SqlOutbox):
    """OutboxRepository on PostgreSQL: a row locked by another replica's claim is skipped,
    never waited for nor taken twice."""

    __slots__ = ()
    _CLAIM = claim_statement(skip_locked=True)

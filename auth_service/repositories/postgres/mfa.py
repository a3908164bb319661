"""Second factors on PostgreSQL: the shared statements (sql_mfa.py) run by asyncpg."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql

from auth_service.repositories.sql_mfa import SqlMfa, pending_upsert

__all__ = ["PgMfa"]

_PUT_PENDING = pending_upsert(postgresql.insert)


class PgMfa(SqlMfa):
    """MfaRepository on PostgreSQL."""

    __slots__ = ()
    _put_pending = _PUT_PENDING

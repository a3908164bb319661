"""Clients, service secrets and revocation records on PostgreSQL: the shared statements
(sql_small.py), the conflict-ignoring INSERTs built with PostgreSQL's `insert`."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql

from auth_service.repositories.sql_small import (
    SqlClients,
    SqlRevocations,
    SqlServiceSecrets,
    first_writer_wins,
)

__all__ = ["PgClients", "PgRevocations", "PgServiceSecrets"]

_INSERTS = first_writer_wins(postgresql.insert)


class PgClients(SqlClients):
    """ClientRepository on PostgreSQL."""

    __slots__ = ()


class PgServiceSecrets(SqlServiceSecrets):
    """ServiceSecretRepository on PostgreSQL."""

    __slots__ = ()
    inserts = _INSERTS


class PgRevocations(SqlRevocations):
    """RevocationRepository (the durable SQL side) on PostgreSQL."""

    __slots__ = ()
    inserts = _INSERTS

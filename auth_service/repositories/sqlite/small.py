"""Clients, service secrets and revocation records on SQLite (on the worker): the shared
statements (sql_small.py), the conflict-ignoring INSERTs built with SQLite's `insert`."""

from __future__ import annotations

from sqlalchemy.dialects import sqlite

from auth_service.repositories.sql_small import (
    SqlClients,
    SqlRevocations,
    SqlServiceSecrets,
    first_writer_wins,
)

__all__ = ["SqliteClients", "SqliteRevocations", "SqliteServiceSecrets"]

_INSERTS = first_writer_wins(sqlite.insert)


class SqliteClients(SqlClients):
    """ClientRepository on SQLite."""

    __slots__ = ()


class SqliteServiceSecrets(SqlServiceSecrets):
    """ServiceSecretRepository on SQLite."""

    __slots__ = ()
    inserts = _INSERTS


class SqliteRevocations(SqlRevocations):
    """RevocationRepository (the durable SQL side) on SQLite."""

    __slots__ = ()
    inserts = _INSERTS

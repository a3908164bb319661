"""Deleting rows past their expiry in bounded batches, the same SQL on both backends.

A purge statement deletes at most `PURGE_BATCH` rows, found through an index, and returns
their keys; `purge_all` repeats it until a batch comes back short. No statement holds
PostgreSQL's row locks, or SQLite's one writer, for longer than one batch.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import Column, ColumnElement, Table, delete, select

from auth_service.db.runner import Runner
from auth_service.db.statements import Statement

__all__ = ["PURGE_BATCH", "purge_all", "purge_statement"]

PURGE_BATCH = 500


def purge_statement(table: Table, key: Column[str], *conditions: ColumnElement[bool]) -> Statement:
    """DELETE one batch of `table`'s rows meeting `conditions`, RETURNING their `key`."""
    doomed = select(key).where(*conditions).limit(PURGE_BATCH)
    return Statement(delete(table).where(key.in_(doomed)).returning(key))


async def purge_all(db: Runner, statement: Statement, params: Mapping[str, object]) -> int:
    """Run a purge statement until nothing is left; how many rows it deleted."""
    total = 0
    while True:
        deleted = len(await db.rows(statement, params))
        total += deleted
        if deleted < PURGE_BATCH:
            return total

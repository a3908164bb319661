"""The SQLAlchemy internals this package relies on, and nothing else touches: one adapter.

Why: the repositories run statements compiled once by SQLAlchemy directly on asyncpg and
sqlite3 (db/statements.py, db/postgres.py), skipping SQLAlchemy's per-execute layers. A
positional driver call needs the compiled parameter order and the constants' values,
which SQLAlchemy otherwise works out on every execute; the pool's checkout, checkin and
invalidation may open or close a connection, which awaits, so they must run in a
greenlet; and a lost connection must retire the whole pool as SQLAlchemy's own
disconnect handling does, since the others likely went with it.

Checked against SQLAlchemy 2.0.x and 2.1.9; tests/test_sqlalchemy_internals.py fails
first if an upgrade changes any of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.pool import Pool, PoolProxiedConnection
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.util.concurrency import greenlet_spawn

__all__ = ["constant_value", "in_greenlet", "invalidate_pool", "positional_binds"]

T = TypeVar("T")


def positional_binds(compiled: SQLCompiler) -> list[BindParameter[Any]]:
    """The compiled statement's parameters in the order of its positional placeholders
    (`SQLCompiler.positiontup`, `.binds`)."""
    assert compiled.positiontup is not None, "a positional dialect's compilation"
    return [compiled.binds[name] for name in compiled.positiontup]


def constant_value(bind: BindParameter[Any]) -> Any:
    """The value of a constant given in the statement (`BindParameter.effective_value`)."""
    return bind.effective_value


async def in_greenlet(work: Callable[..., T], *args: Any) -> T:
    """Run sync pool code that may await the driver (`greenlet_spawn`)."""
    return await greenlet_spawn(work, *args)


async def invalidate_pool(
    pool: Pool, connection: PoolProxiedConnection, error: BaseException
) -> None:
    """Retire every connection of `pool` opened before now, as SQLAlchemy does on a
    disconnect (`Pool._invalidate`)."""
    await greenlet_spawn(pool._invalidate, connection, error)

"""Connection loss is DatabaseUnavailable (503 + Retry-After), whatever path hit it.

A terminated backend, a failover or a restart surfaces from asyncpg in several shapes:
AdminShutdownError and "connection was closed in the middle of operation" (which
SQLAlchemy raises as a bare DBAPIError), "another operation is in progress" on a
connection whose previous statement was cut (InternalClientError), InterfaceError, OSError.
Each is recognised here once, the connection is invalidated (SQLAlchemy then replaces the
pool, whose other connections likely went the same way), and the error raised is the
domain's DatabaseUnavailable instead of whatever the catch-all would have made a 500.
"""

from __future__ import annotations

import asyncpg  # no stubs or py.typed
from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import AsyncEngine

from auth_service.errors import DatabaseUnavailable

__all__ = ["is_connection_loss", "translate_connection_loss"]

# Not every OperatorInterventionError: a cancelled query (57014) is the caller's doing.
_LOSS = (
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, "connection does not exist" too
    asyncpg.exceptions.AdminShutdownError,  # 57P01, pg_terminate_backend, smart shutdown
    asyncpg.exceptions.CrashShutdownError,  # 57P02
    asyncpg.exceptions.CannotConnectNowError,  # 57P03, starting up or in recovery
    asyncpg.exceptions.TooManyConnectionsError,  # 53300
    asyncpg.InterfaceError,  # "connection is closed"
    asyncpg.InternalClientError,  # "another operation is in progress" after a cut
    OSError,  # refused, reset, unreachable; TimeoutError too
)


def is_connection_loss(error: BaseException) -> bool:
    """True if `error`, or any error it was raised from, means the database is out of reach."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _LOSS):
            return True
        orig = getattr(current, "orig", None)  # SQLAlchemy's wrapper of the driver error
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


def _translate(context: ExceptionContext) -> BaseException | None:
    if not (context.is_disconnect or is_connection_loss(context.original_exception)):
        return None
    context.is_disconnect = True  # invalidate the connection (and the pool) at once
    return DatabaseUnavailable()


def translate_connection_loss(engine: AsyncEngine) -> None:
    """Make every connection loss on `engine` raise DatabaseUnavailable."""
    event.listen(engine.sync_engine, "handle_error", _translate)

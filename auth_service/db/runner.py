"""What a repository runs its statements on: a connection, a transaction, or the worker."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from auth_service.db.statements import Statement

__all__ = ["Runner", "SqlSpan"]

# A tracing span around one statement, given its SQL (placeholders, never the values):
# statements run by asyncpg or the SQLite worker do not pass through an engine's events.
SqlSpan = Callable[[str], AbstractContextManager[object]]


class Runner(Protocol):
    """Runs one compiled statement; outside a transaction a write commits on its own."""

    async def rows(self, statement: Statement, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute with `params`; the rows it returns, processed."""
        ...

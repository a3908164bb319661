"""Core statements compiled once by SQLAlchemy, for the drivers to run directly.

A Statement holds what SQLAlchemy would work out on every execute: the SQL text, the
order and bind processing of its parameters, and its columns' result processors. The
repositories hand these to asyncpg (db/postgres.py) or to sqlite3 (db/sqlite_worker.py).

The parameter order and the constants' values come from SQLAlchemy internals, read
through db/sqlalchemy_internals.py (the one adapter that touches them).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Dialect, Select
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

from auth_service.db.sqlalchemy_internals import constant_value, positional_binds

__all__ = ["Bind", "Compiled", "Statement", "StatementFailed"]


class Statement:
    """A Core statement, compiled for its dialect at first use."""

    def __init__(self, statement: ClauseElement, column_keys: Sequence[str] | None = None) -> None:
        self._statement = statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        # One compiled form per dialect: a Statement may serve both backends (tests do).
        self._compiled: dict[str, Compiled] = {}

    def compiled(self, dialect: Dialect) -> Compiled:
        """The statement compiled for `dialect` (the first call per dialect compiles)."""
        return self._compiled.get(dialect.name) or self._compile(dialect)

    def _compile(self, dialect: Dialect) -> Compiled:
        compiled = self._statement.compile(dialect=dialect, column_keys=self._column_keys)
        assert isinstance(compiled, SQLCompiler)
        order = []
        for bind in positional_binds(compiled):
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            # A parameter (bindparam without a value), or a constant given in the statement.
            if bind.required:
                order.append(Bind(bind.key, process))
            else:
                value = constant_value(bind)
                order.append(Bind(None, None, process(value) if process else value))
        # A SELECT's columns, or what an INSERT/UPDATE/DELETE ... RETURNING returns.
        columns = getattr(self._statement, "exported_columns", ())
        results = tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        )
        read = isinstance(self._statement, Select)
        built = Compiled(compiled.string, tuple(order), results, read)
        self._compiled[dialect.name] = built
        return built


class StatementFailed(Exception):
    """A statement's sqlite3 error, raised where it ran, with the statement."""

    def __init__(self, sql: str, args: tuple[Any, ...], error: sqlite3.Error) -> None:
        super().__init__(sql)
        self.sql, self.args, self.error = sql, args, error


@dataclass(frozen=True)
class Bind:
    """One positional parameter: taken from the call's `key`, or a constant `value`."""

    key: str | None  # None: a constant, `value`
    process: Callable[[Any], Any] | None
    value: Any = None

    def argument(self, params: Mapping[str, Any]) -> Any:
        """The driver-ready value of this parameter for `params`."""
        if self.key is None:
            return self.value
        value = params[self.key]
        return self.process(value) if self.process is not None else value


@dataclass(frozen=True)
class Compiled:
    """The SQL, its parameters in order, and its columns' result processors."""

    sql: str
    binds: tuple[Bind, ...]
    results: tuple[Callable[[Any], Any] | None, ...]
    read: bool  # a SELECT

    def arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """The positional driver arguments for `params`."""
        return tuple(bind.argument(params) for bind in self.binds)

    def run(self, connection: sqlite3.Connection, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute on a sqlite3 connection, in its thread; its rows, processed."""
        args = self.arguments(params)
        try:
            rows = connection.execute(self.sql, args).fetchall()
        except sqlite3.Error as error:
            raise StatementFailed(self.sql, args, error) from error
        return self.processed(rows)

    def processed(self, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
        """The rows with the columns' result processors applied."""
        if not any(self.results):
            return list(rows)
        return [
            tuple(
                process(value) if process is not None else value
                for process, value in zip(self.results, row, strict=True)
            )
            for row in rows
        ]

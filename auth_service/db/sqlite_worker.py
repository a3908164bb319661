"""The SQLite hot paths' own connection: one thread, writes committed in groups.

A login or refresh reads a row and writes one small transaction. Through the engine's pool
that took three hops to aiosqlite threads per request, and writers on different pooled
connections met SQLite's write lock, whose busy handler sleeps 1 ms, then 2, 5, ... between
tries. Here the hot statements go to one connection in one thread. Whatever queued up
while the thread was busy runs as one batch: its writes in one transaction (a savepoint
each, so a failing one undoes only itself) with one COMMIT, so one fsync, for the batch.
No caller is answered before the COMMIT that makes its write durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from queue import Empty, SimpleQueue
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError, StatementError

from auth_service.db.statements import Statement, StatementFailed

__all__ = ["MAX_BATCH", "SQLiteWorker", "tune_sqlite"]

_T = TypeVar("_T")

# Jobs taken per batch: bounds how long one transaction holds SQLite's write lock.
MAX_BATCH = 64


def tune_sqlite(connection: Any, _record: Any = None) -> None:
    """Per-connection settings: WAL lets readers proceed during a write; busy_timeout waits
    for another writer instead of failing at once; foreign keys are off by default."""
    cursor = connection.cursor()
    # busy_timeout first: switching a new file to WAL needs a lock another process may hold.
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


@dataclass(frozen=True)
class _Job:
    work: Callable[[sqlite3.Connection], Any]
    writes: bool
    future: asyncio.Future[Any]


@dataclass(frozen=True)
class _Outcome:
    job: _Job
    value: Any = None
    error: BaseException | None = None


class SQLiteWorker:
    """Runs hot statements and write transactions on its own sqlite3 connection.

    Used like the PostgreSQL hot connection (`async with`, `commit()`), but each call is
    complete when it returns: a read has read, a transaction has committed. The thread
    starts at the first call and stops at close() (or when the worker is dropped).
    """

    def __init__(self, path: str, dialect: Dialect) -> None:
        if not path or path == ":memory:":
            raise ValueError("the SQLite hot path needs a database file")
        self.dialect = dialect
        self._path = path
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        weakref.finalize(self, self._jobs.put, None)

    async def __aenter__(self) -> SQLiteWorker:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Nothing to release: the connection is the worker's."""

    async def commit(self) -> None:
        """Nothing to do: every write committed before its call returned."""

    async def rows(self, statement: Statement, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute one statement with `params` (a write commits); the rows it returns."""
        compiled = statement.compiled(self.dialect)
        rows: list[Sequence[Any]] = await self._submit(
            lambda connection: compiled.run(connection, params), writes=not compiled.read
        )
        return rows

    async def transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` in the worker's thread, atomically: its writes commit if it returns
        and are undone if it raises. It should run statements with Compiled.run."""
        result: _T = await self._submit(work, writes=True)
        return result

    async def close(self) -> None:
        """Finish what is queued, close the connection, stop the thread."""
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(thread.join)

    async def _submit(self, work: Callable[[sqlite3.Connection], Any], *, writes: bool) -> Any:
        if self._closed:
            raise RuntimeError("the SQLite worker is closed")
        if self._thread is None:
            self._thread = threading.Thread(
                target=_serve, args=(self._jobs, self._path), name="sqlite-hot", daemon=True
            )
            self._thread.start()
        future = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(work, writes, future))
        try:
            return await future
        except StatementFailed as failed:
            raise self._as_sqlalchemy(failed.sql, failed.args, failed.error) from failed.error
        except sqlite3.Error as error:
            raise self._as_sqlalchemy("", (), error) from error

    def _as_sqlalchemy(
        self, sql: str, args: tuple[Any, ...], error: sqlite3.Error
    ) -> StatementError:
        """The driver's error as SQLAlchemy raises it. A closed connection (replaced for
        the next call) is OperationalError, which answers 503, as a lost one does."""
        closed = _is_closed(error)
        if closed:
            error = sqlite3.OperationalError(str(error))
        return DBAPIError.instance(
            sql,
            args,
            error,
            sqlite3.Error,
            hide_parameters=True,
            connection_invalidated=closed,
            dialect=self.dialect,
        )


def _serve(jobs: SimpleQueue[_Job | None], path: str) -> None:
    """The worker thread: batches of jobs until the stop mark."""
    connection: sqlite3.Connection | None = None
    stopping = False
    try:
        while not stopping:
            batch, stopping = _next_batch(jobs)
            if not batch:
                continue
            try:
                if connection is None:
                    connection = _connect(path)
                outcomes = _run(connection, batch)
            except BaseException as error:  # the batch as a whole failed
                outcomes = [_Outcome(job, error=error) for job in batch]
            if any(_is_closed(outcome.error) for outcome in outcomes):
                connection = None  # closed under us: the next batch opens a new one
            _deliver(outcomes)
    finally:
        if connection is not None:
            connection.close()


def _next_batch(jobs: SimpleQueue[_Job | None]) -> tuple[list[_Job], bool]:
    """Wait for a job, then take what else is queued (up to MAX_BATCH); True at the stop mark."""
    first = jobs.get()
    if first is None:
        return [], True
    batch = [first]
    while len(batch) < MAX_BATCH:
        try:
            job = jobs.get_nowait()
        except Empty:
            break
        if job is None:
            return batch, True
        batch.append(job)
    return batch, False


def _connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: no implicit BEGIN; _run writes its own BEGIN and COMMIT.
    connection = sqlite3.connect(path, isolation_level=None)
    tune_sqlite(connection)
    return connection


def _run(connection: sqlite3.Connection, batch: list[_Job]) -> list[_Outcome]:
    """Run a batch; its writes as one transaction, each job's inside its own savepoint."""
    if not any(job.writes for job in batch):
        return [_attempt(connection, job) for job in batch]
    # IMMEDIATE takes the write lock up front (waiting up to busy_timeout for it), so no
    # statement of the batch can fail later for want of it.
    connection.execute("BEGIN IMMEDIATE")
    try:
        outcomes = []
        for job in batch:
            if not job.writes:
                outcomes.append(_attempt(connection, job))
                continue
            connection.execute("SAVEPOINT job")
            outcome = _attempt(connection, job)
            if outcome.error is not None:
                connection.execute("ROLLBACK TO job")
            connection.execute("RELEASE job")
            outcomes.append(outcome)
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return outcomes


def _attempt(connection: sqlite3.Connection, job: _Job) -> _Outcome:
    try:
        return _Outcome(job, value=job.work(connection))
    except Exception as error:
        return _Outcome(job, error=error)


def _deliver(outcomes: list[_Outcome]) -> None:
    """Hand the results to their event loops, one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome.job.future.get_loop(), []).append(outcome)
    for loop, settled in by_loop.items():
        # RuntimeError: that loop has closed, nobody waits for these any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, settled)


def _settle(outcomes: list[_Outcome]) -> None:
    """In the event loop: complete each caller's future (unless it gave up waiting)."""
    for outcome in outcomes:
        future = outcome.job.future
        if future.done():
            continue
        if outcome.error is not None:
            future.set_exception(outcome.error)
        else:
            future.set_result(outcome.value)


def _is_closed(error: BaseException | None) -> bool:
    """True for sqlite3's "Cannot operate on a closed database", raised or in a statement."""
    if isinstance(error, StatementFailed):
        error = error.error
    return isinstance(error, sqlite3.ProgrammingError) and "closed database" in str(error)

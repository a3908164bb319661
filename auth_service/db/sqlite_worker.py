"""The service's one SQLite connection: one thread, writes committed in groups.

A login or refresh reads a row and writes one small transaction. Through the engine's pool
that took three hops to aiosqlite threads per request, and writers on different pooled
connections met SQLite's write lock, whose busy handler sleeps 1 ms, then 2, 5, ... between
tries. Here every statement goes to one connection in one thread. Whatever queued up
while the thread was busy runs as one batch: its writes in one transaction (a savepoint
each, so a failing one undoes only itself) with one COMMIT, so one fsync, for the batch.
No caller is answered before the COMMIT that makes its write durable.

It is the only connection the service opens on the file (one writer): a transaction that
spans several awaited statements (WorkerSession, from session()) reserves the thread from
BEGIN to COMMIT, and other jobs wait for it, as they would for SQLite's write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import Any, TypeVar

from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError, StatementError

from auth_service.db.runner import SqlSpan
from auth_service.db.statements import Statement, StatementFailed
from auth_service.db.unavailable import sqlite_unavailable
from auth_service.errors import DatabaseUnavailable

__all__ = ["MAX_BATCH", "SQLiteWorker", "WorkerSession", "tune_sqlite"]

_T = TypeVar("_T")

# The span of a job that is not one statement (a repository's work function).
_TRANSACTION_SPAN = "TRANSACTION"
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
    # A session's first job: the thread then runs only that session's steps until its end.
    session: _Channel | None = None
    end: str | None = None  # in a session's steps: "commit" or "rollback"


@dataclass(frozen=True)
class _Channel:
    """The steps of one WorkerSession, in order, ending with a commit or rollback step."""

    steps: SimpleQueue[_Job] = field(default_factory=SimpleQueue)


# The worker whose session a task holds, and that task: a job it queued behind its own
# session would wait for it forever. (Tasks it starts inherit the variable but are others.)
_HOLDING: ContextVar[tuple[SQLiteWorker, asyncio.Task[Any] | None] | None] = ContextVar(
    "sqlite_worker_session", default=None
)


def _nothing(_connection: sqlite3.Connection) -> None:
    return None


@dataclass(frozen=True)
class _Outcome:
    job: _Job
    value: Any = None
    error: BaseException | None = None


class SQLiteWorker:
    """Runs every statement and transaction of the service on its own sqlite3 connection.

    Each call is complete when it returns: a read has read, a transaction has committed.
    The thread starts at the first call and stops at close() (or when the worker is dropped).
    """

    def __init__(self, path: str, dialect: Dialect, *, span: SqlSpan | None = None) -> None:
        if not path or path == ":memory:":
            raise ValueError("the SQLite backend needs a database file")
        self.dialect = dialect
        self.span = span
        self._path = path
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        weakref.finalize(self, self._jobs.put, None)

    async def rows(self, statement: Statement, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute one statement with `params` (a write commits); the rows it returns."""
        compiled = statement.compiled(self.dialect)
        with self.traced(compiled.sql):
            rows: list[Sequence[Any]] = await self._submit(
                lambda connection: compiled.run(connection, params), writes=not compiled.read
            )
        return rows

    async def transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` in the worker's thread, atomically: its writes commit if it returns
        and are undone if it raises. It should run statements with Compiled.run."""
        with self.traced(_TRANSACTION_SPAN):
            result: _T = await self._submit(work, writes=True)
        return result

    def traced(self, sql: str) -> contextlib.AbstractContextManager[object]:
        """The tracing span of one job (queue wait included), or nothing without tracing."""
        return self.span(sql) if self.span is not None else contextlib.nullcontext()

    @property
    def queued(self) -> int:
        """Jobs waiting for the worker's thread (the metrics' view of its load)."""
        return self._jobs.qsize()

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[WorkerSession]:
        """One transaction over several awaited statements: BEGIN IMMEDIATE now, COMMIT
        when the block ends (ROLLBACK if it raises). The thread serves only this session
        meanwhile, so keep the block short."""
        if self._held_here():
            raise RuntimeError("a SQLite transaction is already open in this task")
        channel = _Channel()
        try:
            await self._submit(_nothing, writes=True, session=channel)
            holding = _HOLDING.set((self, asyncio.current_task()))
            try:
                yield WorkerSession(self, channel)
            finally:
                _HOLDING.reset(holding)
        except BaseException:
            loop = asyncio.get_running_loop()
            channel.steps.put(_Job(_nothing, True, loop.create_future(), end="rollback"))
            raise
        await self._step(channel, _nothing, end="commit")

    def _held_here(self) -> bool:
        held = _HOLDING.get()
        return held is not None and held[0] is self and held[1] is asyncio.current_task()

    async def _step(
        self, channel: _Channel, work: Callable[[sqlite3.Connection], Any], end: str | None = None
    ) -> Any:
        future = asyncio.get_running_loop().create_future()
        channel.steps.put(_Job(work, True, future, end=end))
        return await self._outcome(future)

    async def close(self) -> None:
        """Finish what is queued, close the connection, stop the thread."""
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is not None:
            self._jobs.put(None)
            await asyncio.to_thread(thread.join)

    async def _submit(
        self,
        work: Callable[[sqlite3.Connection], Any],
        *,
        writes: bool,
        session: _Channel | None = None,
    ) -> Any:
        if self._closed:
            raise RuntimeError("the SQLite worker is closed")
        if self._held_here():
            raise RuntimeError("inside a SQLite transaction: use its repositories")
        if self._thread is None:
            self._thread = threading.Thread(
                target=_serve, args=(self._jobs, self._path), name="sqlite-worker", daemon=True
            )
            self._thread.start()
        future = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(work, writes, future, session=session))
        return await self._outcome(future)

    async def _outcome(self, future: asyncio.Future[Any]) -> Any:
        try:
            return await future
        except StatementFailed as failed:
            sql, args, error = failed.sql, failed.args, failed.error
        except sqlite3.Error as raised:
            sql, args, error = "", (), raised
        wrapped = self._as_sqlalchemy(sql, args, error)
        # Closed (replaced for the next call), locked, unreadable or full: retry later.
        if _is_closed(error) or sqlite_unavailable(error):
            raise DatabaseUnavailable() from wrapped
        raise wrapped from error

    def _as_sqlalchemy(
        self, sql: str, args: tuple[Any, ...], error: sqlite3.Error
    ) -> StatementError:
        """The driver's error as SQLAlchemy raises it (a closed connection, replaced for
        the next call, as an invalidated OperationalError)."""
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


class WorkerSession:
    """The statements of one transaction on the worker (see SQLiteWorker.session)."""

    __slots__ = ("_channel", "_worker", "dialect")

    def __init__(self, worker: SQLiteWorker, channel: _Channel) -> None:
        self._worker, self._channel = worker, channel
        self.dialect = worker.dialect

    async def rows(self, statement: Statement, params: Mapping[str, Any]) -> list[Sequence[Any]]:
        """Execute one statement inside the transaction; the rows it returns."""
        compiled = statement.compiled(self.dialect)
        with self._worker.traced(compiled.sql):
            rows: list[Sequence[Any]] = await self._worker._step(
                self._channel, lambda connection: compiled.run(connection, params)
            )
        return rows

    async def transaction(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run `work` in the worker's thread inside a savepoint of this transaction."""

        def atomically(connection: sqlite3.Connection) -> _T:
            connection.execute("SAVEPOINT work")
            try:
                result = work(connection)
            except BaseException:
                connection.execute("ROLLBACK TO work")
                connection.execute("RELEASE work")
                raise
            connection.execute("RELEASE work")
            return result

        with self._worker.traced(_TRANSACTION_SPAN):
            result: _T = await self._worker._step(self._channel, atomically)
        return result


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
                outcomes = _run_in_order(connection, batch)
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


def _run_in_order(connection: sqlite3.Connection, batch: list[_Job]) -> list[_Outcome]:
    """Run a batch; a session job ends the group before it and runs alone."""
    outcomes: list[_Outcome] = []
    group: list[_Job] = []
    for job in batch:
        if job.session is None:
            group.append(job)
            continue
        if group:
            done = _run(connection, group)
            _deliver(done)  # now, not after the session
            outcomes += done
            group = []
        outcomes += _run_session(connection, job)
    if group:
        outcomes += _run(connection, group)
    return outcomes


def _run_session(connection: sqlite3.Connection, start: _Job) -> list[_Outcome]:
    """BEGIN, then the session's steps as they arrive, answered one by one, until its end;
    the outcomes of steps whose connection closed under them (for _serve to notice)."""
    assert start.session is not None
    steps = start.session.steps
    try:
        connection.execute("BEGIN IMMEDIATE")
    except BaseException as error:
        _deliver([_Outcome(start, error=error)])
        return []
    _deliver([_Outcome(start)])
    closed: list[_Outcome] = []
    while True:
        step = steps.get()
        if step.end == "rollback":
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            return closed
        if step.end == "commit":
            outcome = _attempt(connection, _Job(_commit, True, step.future))
            if outcome.error is not None and connection.in_transaction:
                connection.execute("ROLLBACK")
            _deliver([outcome])
            return closed
        outcome = _attempt(connection, step)
        if _is_closed(outcome.error):
            closed.append(_Outcome(step, error=outcome.error))
        _deliver([outcome])


def _commit(connection: sqlite3.Connection) -> None:
    connection.execute("COMMIT")


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

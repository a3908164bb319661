"""The SQLite hot paths' worker: batches, group commit, failures that stay their own."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.exc import IntegrityError, OperationalError

from auth_service.db.sqlite_worker import SQLiteWorker
from auth_service.errors import DatabaseUnavailable

WAIT_SECONDS = 5


@pytest.fixture
async def worker(tmp_path: Path) -> AsyncIterator[SQLiteWorker]:
    """A worker on a fresh file with one table, `item(name UNIQUE)`."""
    path = tmp_path / "worker.db"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE item (name TEXT PRIMARY KEY)")
    setup.close()
    worker = SQLiteWorker(str(path), SQLiteDialect_aiosqlite())
    yield worker
    await worker.close()


def _insert(name: str) -> Callable[[sqlite3.Connection], str]:
    def work(connection: sqlite3.Connection) -> str:
        connection.execute("INSERT INTO item (name) VALUES (?)", (name,))
        return name

    return work


async def _names(worker: SQLiteWorker) -> list[str]:
    def read(connection: sqlite3.Connection) -> list[str]:
        return [row[0] for row in connection.execute("SELECT name FROM item ORDER BY name")]

    return await worker.transaction(read)


class _Gate:
    """A job that holds the worker's thread until the test opens it, recording every
    statement the connection runs from then on."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.statements: list[str] = []

    def __call__(self, connection: sqlite3.Connection) -> None:
        connection.set_trace_callback(self.statements.append)
        self.entered.set()
        assert self.opened.wait(WAIT_SECONDS)

    async def hold(self, worker: SQLiteWorker) -> asyncio.Task[None]:
        held = asyncio.create_task(worker.transaction(self))
        assert await asyncio.to_thread(self.entered.wait, WAIT_SECONDS)
        return held


async def test_writes_queued_meanwhile_commit_together(worker: SQLiteWorker) -> None:
    gate = _Gate()
    held = await gate.hold(worker)
    queued = [asyncio.create_task(worker.transaction(_insert(f"n{i}"))) for i in range(5)]
    await asyncio.sleep(0.05)  # let every task put its job in the queue
    assert not any(task.done() for task in queued)  # nobody answered before a COMMIT
    gate.opened.set()
    await held
    assert await asyncio.gather(*queued) == [f"n{i}" for i in range(5)]
    # The gate's own transaction commits, then the five writes with one COMMIT (one fsync).
    assert gate.statements.count("COMMIT") == 2
    assert gate.statements.count("SAVEPOINT job") == 5
    assert await _names(worker) == [f"n{i}" for i in range(5)]


async def test_a_failing_job_undoes_only_its_own_writes(worker: SQLiteWorker) -> None:
    def insert_then_fail(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO item (name) VALUES ('doomed')")
        raise LookupError("this job fails after writing")

    gate = _Gate()
    held = await gate.hold(worker)
    before = asyncio.create_task(worker.transaction(_insert("before")))
    failing = asyncio.create_task(worker.transaction(insert_then_fail))
    duplicate = asyncio.create_task(worker.transaction(_insert("before")))  # UNIQUE refuses
    after = asyncio.create_task(worker.transaction(_insert("after")))
    await asyncio.sleep(0.05)
    gate.opened.set()
    await held
    assert await before == "before"
    with pytest.raises(LookupError):
        await failing
    with pytest.raises(IntegrityError):
        await duplicate
    assert await after == "after"
    assert gate.statements.count("COMMIT") == 2
    assert await _names(worker) == ["after", "before"]


async def test_a_closed_connection_answers_503_once_then_is_replaced(worker: SQLiteWorker) -> None:
    await worker.transaction(_insert("kept"))
    with pytest.raises(DatabaseUnavailable) as raised:
        await worker.transaction(lambda connection: connection.close())
    cause = raised.value.__cause__
    assert isinstance(cause, OperationalError)
    assert cause.connection_invalidated
    assert await _names(worker) == ["kept"]
    assert await worker.transaction(_insert("later")) == "later"


async def test_close_finishes_what_is_queued_then_refuses(worker: SQLiteWorker) -> None:
    writes = [asyncio.create_task(worker.transaction(_insert(f"q{i}"))) for i in range(3)]
    await asyncio.sleep(0)  # the tasks queue their jobs
    await worker.close()
    assert await asyncio.gather(*writes) == ["q0", "q1", "q2"]
    with pytest.raises(RuntimeError):
        await worker.transaction(_insert("too late"))


async def test_a_session_commits_its_statements_together(worker: SQLiteWorker) -> None:
    async with worker.session() as tx:
        await tx.transaction(_insert("a"))
        await tx.transaction(_insert("b"))
    assert await _names(worker) == ["a", "b"]


async def _insert_then_fail(worker: SQLiteWorker) -> None:
    async with worker.session() as tx:
        await tx.transaction(_insert("a"))
        raise LookupError


async def _insert_twice(worker: SQLiteWorker) -> None:
    async with worker.session() as tx:
        await tx.transaction(_insert("a"))
        await tx.transaction(_insert("a"))


async def test_a_session_that_raises_leaves_nothing(worker: SQLiteWorker) -> None:
    with pytest.raises(LookupError):
        await _insert_then_fail(worker)
    assert await _names(worker) == []
    async with worker.session() as tx:  # the thread serves other work again
        await tx.transaction(_insert("c"))
    assert await _names(worker) == ["c"]


async def test_a_failing_statement_in_a_session_is_a_sqlalchemy_error(
    worker: SQLiteWorker,
) -> None:
    with pytest.raises(IntegrityError):
        await _insert_twice(worker)
    assert await _names(worker) == []


async def test_other_jobs_wait_for_a_session_and_then_run(worker: SQLiteWorker) -> None:
    opened = asyncio.Event()

    async def other_request() -> str:
        await opened.wait()
        return await worker.transaction(_insert("b"))

    waiting = asyncio.create_task(other_request())  # another task: it holds no session
    async with worker.session() as tx:
        await tx.transaction(_insert("a"))
        opened.set()
        await asyncio.sleep(0.05)
        assert not waiting.done()  # one writer: it waits for the session's COMMIT
    assert await asyncio.wait_for(waiting, WAIT_SECONDS) == "b"
    assert await _names(worker) == ["a", "b"]


async def test_a_job_from_inside_the_session_is_refused_not_deadlocked(
    worker: SQLiteWorker,
) -> None:
    async def nested() -> None:
        async with worker.session():
            await worker.transaction(_insert("a"))

    with pytest.raises(RuntimeError, match="inside a SQLite transaction"):
        await nested()
    assert await _names(worker) == []


async def test_a_cancelled_session_step_rolls_the_session_back(worker: SQLiteWorker) -> None:
    gate = threading.Event()

    def blocked(connection: sqlite3.Connection) -> None:
        connection.execute("INSERT INTO item (name) VALUES ('a')")
        gate.wait(WAIT_SECONDS)

    async def hold() -> None:
        async with worker.session() as tx:
            await tx.transaction(blocked)

    task = asyncio.create_task(hold())
    await asyncio.sleep(0.05)
    task.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.wait_for(_names(worker), WAIT_SECONDS) == []


def _busy_error(path: Path) -> sqlite3.OperationalError:
    """A real SQLITE_BUSY: a write while another connection holds the file exclusively."""
    holder = sqlite3.connect(path, isolation_level=None)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        try:
            other.execute("INSERT INTO item (name) VALUES ('blocked')")
        except sqlite3.OperationalError as error:
            return error
        raise AssertionError("the write was not refused")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        other.close()


async def test_a_locked_sqlite_file_is_database_unavailable(
    worker: SQLiteWorker, tmp_path: Path
) -> None:
    busy = _busy_error(tmp_path / "worker.db")
    assert busy.sqlite_errorname == "SQLITE_BUSY"

    def locked(_: sqlite3.Connection) -> None:
        raise busy

    with pytest.raises(DatabaseUnavailable) as raised:
        await worker.transaction(locked)
    assert isinstance(raised.value.__cause__, OperationalError)
    assert await worker.transaction(_insert("after")) == "after"  # the worker goes on


async def test_a_faulty_sqlite_statement_stays_a_sqlalchemy_error(worker: SQLiteWorker) -> None:
    with pytest.raises(OperationalError):  # SQLITE_ERROR: the statement's fault, not the file's
        await worker.transaction(lambda connection: connection.execute("SELECT nosuch()"))

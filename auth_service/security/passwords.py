"""Password hashing: argon2id through passlib, run in a small bounded thread pool.

argon2 costs tens of MiB and tens of milliseconds per call, so it never runs on the event
loop: a fixed number of low-priority threads do it (the pool size caps memory), a bounded
number of callers may wait for a slot, and the rest are refused with `HashingBusy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from passlib.context import CryptContext

from auth_service.errors import HashingBusy

__all__ = ["Argon2Parameters", "HashingPool", "PasswordHasher", "VerifyResult"]

_T = TypeVar("_T")
_ARGON2_COST = re.compile(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")


@dataclass(frozen=True)
class Argon2Parameters:
    """argon2id cost: memory in KiB, passes, lanes."""

    memory_kib: int
    time_cost: int
    parallelism: int


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a verify; `new_hash` is set when the stored hash should be upgraded."""

    ok: bool
    new_hash: str | None = None


class PasswordHasher(Protocol):
    """What services need from password hashing (swappable in tests)."""

    async def hash(self, password: str) -> str: ...

    async def verify(self, password: str, stored_hash: str) -> VerifyResult: ...

    async def dummy_verify(self, password: str) -> None: ...

    def has_capacity(self) -> bool:
        """False when a hash or verify started now would be refused with HashingBusy."""
        ...


def _lower_thread_priority() -> None:
    """Let the event loop win the CPU: hashing threads run at a higher nice value."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class HashingPool:
    """argon2id hashing with bcrypt as a legacy scheme, off the loop, with bounded queueing."""

    def __init__(
        self,
        params: Argon2Parameters,
        *,
        workers: int,
        max_waiting: int,
        wait_timeout_seconds: float,
        observe_seconds: Callable[[float], None] | None = None,
        span: Callable[[str], contextlib.AbstractContextManager[object]] | None = None,
    ) -> None:
        self._params = params
        self._span = span  # tracing: one span per job, queue wait included
        self._context = CryptContext(
            schemes=["argon2", "bcrypt"],
            deprecated=["bcrypt"],
            argon2__type="ID",
            argon2__memory_cost=params.memory_kib,
            argon2__rounds=params.time_cost,
            argon2__parallelism=params.parallelism,
        )
        self._executor = ThreadPoolExecutor(
            max_workers=workers,
            thread_name_prefix="argon2",
            initializer=_lower_thread_priority,
        )
        self._slots = asyncio.Semaphore(workers)
        self._capacity = workers + max_waiting
        self._in_flight = 0
        self._waiting = 0
        self._size = workers
        self._wait_timeout = wait_timeout_seconds
        self._dummy_hash = ""
        self._observe = observe_seconds

    @property
    def in_flight(self) -> int:
        """Hash jobs running or waiting for a slot right now."""
        return self._in_flight

    @property
    def size(self) -> int:
        """Hashing threads."""
        return self._size

    @property
    def waiting(self) -> int:
        """Hash jobs waiting for a free thread right now."""
        return self._waiting

    def has_capacity(self) -> bool:
        """False when every slot and every waiting place is taken (a new job is refused)."""
        return self._in_flight < self._capacity

    async def start(self) -> None:
        """Compute the dummy hash used for unknown users; this also warms the threads."""
        self._dummy_hash = await self.hash(secrets.token_urlsafe(24))

    def close(self) -> None:
        """Stop the threads after running jobs finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    async def hash(self, password: str) -> str:
        result: str = await self._run("argon2 hash", self._context.hash, password)
        return result

    async def verify(self, password: str, stored_hash: str) -> VerifyResult:
        ok, new_hash = await self._run("argon2 verify", self._verify_sync, password, stored_hash)
        return VerifyResult(ok=ok, new_hash=new_hash)

    async def dummy_verify(self, password: str) -> None:
        """Spend exactly the work of a real verify, so unknown users cost the same."""
        await self._run("argon2 verify", self._verify_sync, password, self._dummy_hash)

    def _verify_sync(self, password: str, stored_hash: str) -> tuple[bool, str | None]:
        try:
            ok, new_hash = self._context.verify_and_update(password, stored_hash)
        except (ValueError, TypeError):
            # A corrupt or unknown stored hash must not become a 500 or a shortcut:
            # spend the same work on the dummy hash and refuse.
            if self._dummy_hash:
                self._context.verify(password, self._dummy_hash)
            return False, None
        if new_hash is not None and not self._is_weaker(stored_hash):
            new_hash = None  # passlib flags any difference; never downgrade a stronger hash
        return bool(ok), new_hash

    def _is_weaker(self, stored_hash: str) -> bool:
        """True for legacy schemes and argon2 hashes below the configured cost."""
        match = _ARGON2_COST.match(stored_hash)
        if match is None:
            return True
        memory, time_cost = int(match.group(1)), int(match.group(2))
        return memory < self._params.memory_kib or time_cost < self._params.time_cost

    def _timed(self, func: Callable[..., _T], *args: str) -> _T:
        started = time.perf_counter()
        try:
            return func(*args)
        finally:
            if self._observe is not None:
                self._observe(time.perf_counter() - started)

    def _job_done(self, job: asyncio.Future[Any]) -> None:
        self._slots.release()
        if not job.cancelled():
            job.exception()  # mark as retrieved when the caller was cancelled meanwhile

    async def _run(self, name: str, func: Callable[..., _T], *args: str) -> _T:
        """Run `func` on a hashing thread once a slot frees up, or refuse with HashingBusy."""
        if self._span is None:
            return await self._run_untraced(func, *args)
        with self._span(name):
            return await self._run_untraced(func, *args)

    async def _run_untraced(self, func: Callable[..., _T], *args: str) -> _T:
        if not self.has_capacity():
            raise HashingBusy
        self._in_flight += 1
        try:
            self._waiting += 1
            try:
                await asyncio.wait_for(self._slots.acquire(), self._wait_timeout)
            except TimeoutError:
                raise HashingBusy from None
            finally:
                self._waiting -= 1
            job = asyncio.get_running_loop().run_in_executor(
                self._executor, self._timed, func, *args
            )
            # The slot is freed when the thread finishes, not when the caller gives up:
            # a cancelled request must not let more argon2 jobs run than there are slots.
            job.add_done_callback(self._job_done)
            return await asyncio.shield(job)
        finally:
            self._in_flight -= 1

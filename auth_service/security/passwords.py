"""Password hashing: argon2id through passlib, run in a small bounded thread pool.

argon2 costs tens of MiB and tens of milliseconds per call, so it never runs on the event
loop: a fixed number of low-priority threads do it (the pool size caps memory), a bounded
number of callers may wait for a slot, and the rest are refused with `HashingBusy`.

An unknown username costs one verify of a dummy hash whose parameters are drawn from the
stored hashes (`use_population`), not from the configured cost: after a cost change the
stored hashes keep their old parameters until their owners log in, and a dummy at the new
cost would tell unknown names from real ones by timing. Each name keeps its own draw
(keyed by a secret the replicas share), so over all names the dummy costs are spread
exactly like the stored ones and one name does not change cost from try to try.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from passlib.context import CryptContext
from passlib.hash import argon2, bcrypt

from auth_service.errors import HashingBusy

__all__ = ["Argon2Parameters", "HashingPool", "PasswordHasher", "VerifyResult", "cost_class"]

_T = TypeVar("_T")
_ARGON2_COST = re.compile(r"\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")
_ARGON2_CLASS = re.compile(r"\$argon2(id|i|d)\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$")
_BCRYPT_CLASS = re.compile(r"\$(2[abxy])\$(\d{2})\$")
# At most this many distinct parameter sets get a dummy hash (one hash each to build);
# rarer ones are left out of the draw.
MAX_DUMMY_CLASSES = 8


def cost_class(stored_hash: str) -> str | None:
    """The scheme-and-parameters prefix that fixes a hash's verify cost, or None."""
    match = _ARGON2_CLASS.match(stored_hash) or _BCRYPT_CLASS.match(stored_hash)
    return match.group(0) if match else None


def _cost_order(prefix: str) -> tuple[int, int]:
    """Sorts classes cheap to dear, so a shifting population moves names one way only."""
    match = _ARGON2_CLASS.match(prefix)
    if match is None:
        return (0, int(prefix[4:6]))  # bcrypt rounds: the legacy scheme goes first
    return (1, int(match.group(2)) * int(match.group(3)))


def _dummy_of_class(prefix: str) -> str:
    """A hash of a random password with exactly the parameters named by `prefix`."""
    password = secrets.token_urlsafe(24)
    argon = _ARGON2_CLASS.match(prefix)
    if argon is not None:
        kind, memory, rounds, lanes = argon.groups()
        hasher = argon2.using(
            type=kind.upper(),
            memory_cost=int(memory),
            rounds=int(rounds),
            parallelism=int(lanes),
        )
        return str(hasher.hash(password))
    ident, rounds = prefix[1:3], prefix[4:6]
    return str(bcrypt.using(ident=ident, rounds=int(rounds)).hash(password))


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

    async def dummy_verify(self, password: str, username: str = "") -> None: ...

    async def use_population(self, stored_hashes: Iterable[str], key: bytes) -> None: ...

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
        # The draw for unknown names: cumulative shares (0..1] and their dummy hashes.
        self._population_key = b""
        self._shares: list[float] = []
        self._population_dummies: list[str] = []
        self._dummy_by_class: dict[str, str] = {}

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

    async def use_population(self, stored_hashes: Iterable[str], key: bytes) -> None:
        """Draw unknown names' dummy hashes from the parameters of `stored_hashes`.

        `stored_hashes` is a sample of the stored ones; `key` must be the same on every
        replica and unknown outside the service, or a name's draw could be predicted.
        Without any hash of a known scheme, the dummy keeps the configured cost.
        """
        counts = Counter(c for c in map(cost_class, stored_hashes) if c is not None)
        classes = sorted(
            (prefix for prefix, _ in counts.most_common(MAX_DUMMY_CLASSES)), key=_cost_order
        )
        for prefix in classes:
            if prefix not in self._dummy_by_class:
                self._dummy_by_class[prefix] = await self._run(
                    "argon2 hash", _dummy_of_class, prefix
                )
        total = sum(counts[prefix] for prefix in classes)
        shares, running = [], 0
        for prefix in classes:
            running += counts[prefix]
            shares.append(running / total)
        self._population_key = key
        self._shares = shares
        self._population_dummies = [self._dummy_by_class[prefix] for prefix in classes]

    def dummy_hash_for(self, username: str) -> str:
        """The hash an unknown `username` is verified against (stable for a population)."""
        if not self._shares:
            return self._dummy_hash
        digest = hmac.digest(self._population_key, username.encode("utf-8"), hashlib.sha256)
        draw = int.from_bytes(digest[:8], "big") / 2**64
        index = min(bisect.bisect_right(self._shares, draw), len(self._shares) - 1)
        return self._population_dummies[index]

    async def dummy_verify(self, password: str, username: str = "") -> None:
        """Spend the work of a real verify of a stored hash, so unknown users cost the same."""
        await self._run("argon2 verify", self._verify_sync, password, self.dummy_hash_for(username))

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

"""HashingPool: argon2id off the event loop, legacy upgrades, and bounded queueing.

The capacity tests never rely on timing luck: the hashing thread is held on a
`threading.Event` that the test opens only when it has checked what it wants.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from passlib.hash import argon2, bcrypt
from sqlalchemy import text

from auth_service.app import create_app
from auth_service.config import OWASP_MIN_MEMORY_KIB, OWASP_MIN_TIME_COST, Settings
from auth_service.errors import HashingBusy
from auth_service.security.passwords import (
    Argon2Parameters,
    HashingPool,
    VerifyResult,
    cost_class,
)
from auth_service.services.hash_population import refresh_hash_population
from tests.conftest import TEST_ISSUER, at_the_argon2_floor, direct_sql, password_grant, register

OWASP = Argon2Parameters(19456, 2, 1)
PREFIX = "$argon2id$v=19$m=19456,t=2,p=1$"
PASSWORD = "correct horse battery staple"


def make_pool(
    *, workers: int = 2, max_waiting: int = 4, wait_timeout_seconds: float = 5.0
) -> HashingPool:
    return HashingPool(
        OWASP, workers=workers, max_waiting=max_waiting, wait_timeout_seconds=wait_timeout_seconds
    )


@pytest.fixture
async def pool() -> AsyncIterator[HashingPool]:
    hashing = make_pool()
    await hashing.start()
    yield hashing
    hashing.close()


class Gate:
    """Wraps the pool's CryptContext so that `hash` blocks until the test opens the gate."""

    def __init__(self, context: Any) -> None:
        self._context = context
        self.opened = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    def hash(self, password: str) -> str:
        self.calls += 1
        self.entered.set()
        if not self.opened.wait(timeout=10):
            raise RuntimeError("the test never opened the gate")
        result: str = self._context.hash(password)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)


GatedPoolFactory = Callable[..., Awaitable[tuple[HashingPool, Gate]]]


@pytest.fixture
def gated() -> Iterator[GatedPoolFactory]:
    """Builds started 1-worker pools (waiting room per test) whose hash() blocks on a gate."""
    pools: list[tuple[HashingPool, Gate]] = []

    async def build(max_waiting: int, wait_timeout_seconds: float) -> tuple[HashingPool, Gate]:
        hashing = make_pool(
            workers=1, max_waiting=max_waiting, wait_timeout_seconds=wait_timeout_seconds
        )
        await hashing.start()  # the dummy hash, computed before the gate goes in
        gate = Gate(hashing._context)
        hashing._context = gate
        pools.append((hashing, gate))
        return hashing, gate

    yield build
    for hashing, gate in pools:
        gate.opened.set()  # never leave a thread blocked, even when the test failed
        hashing.close()


async def wait_until_running(gate: Gate) -> None:
    """Block (off the loop) until the hashing thread has entered the gated call."""
    assert await asyncio.to_thread(gate.entered.wait, 5), "the hash job never started"


# --- hashing and verifying -----------------------------------------------------------


async def test_hash_is_argon2id_with_the_configured_parameters(pool: HashingPool) -> None:
    hashed = await pool.hash(PASSWORD)
    assert hashed.startswith(PREFIX)
    assert PASSWORD not in hashed
    assert await pool.hash(PASSWORD) != hashed  # salted


async def test_verify_correct_and_wrong_password(pool: HashingPool) -> None:
    hashed = await pool.hash(PASSWORD)
    assert await pool.verify(PASSWORD, hashed) == VerifyResult(ok=True, new_hash=None)
    assert await pool.verify(PASSWORD + " ", hashed) == VerifyResult(ok=False, new_hash=None)
    assert await pool.verify("", hashed) == VerifyResult(ok=False, new_hash=None)


async def test_unicode_password_round_trips(pool: HashingPool) -> None:
    password = "pässwörd ☃ 密码 🔐"
    hashed = await pool.hash(password)
    assert (await pool.verify(password, hashed)).ok is True
    assert (await pool.verify("passwörd ☃ 密码 🔐", hashed)).ok is False


async def test_legacy_bcrypt_hash_verifies_and_is_upgraded(pool: HashingPool) -> None:
    legacy = bcrypt.using(rounds=4).hash(PASSWORD)
    assert legacy.startswith("$2b$04$")

    result = await pool.verify(PASSWORD, legacy)
    assert result.ok is True
    assert result.new_hash is not None
    assert result.new_hash.startswith(PREFIX)
    assert await pool.verify(PASSWORD, result.new_hash) == VerifyResult(ok=True, new_hash=None)

    assert await pool.verify("wrong password", legacy) == VerifyResult(ok=False, new_hash=None)


@pytest.mark.parametrize(
    "weaker",
    [
        pytest.param({"rounds": 1}, id="t=1"),
        pytest.param({"memory_cost": 8192}, id="m=8192"),
    ],
)
async def test_weaker_argon2_hash_verifies_and_is_upgraded(
    pool: HashingPool, weaker: dict[str, int]
) -> None:
    params = {"type": "ID", "memory_cost": 19456, "rounds": 2, "parallelism": 1, **weaker}
    old = argon2.using(**params).hash(PASSWORD)
    assert not old.startswith(PREFIX)

    result = await pool.verify(PASSWORD, old)
    assert result.ok is True
    assert result.new_hash is not None
    assert result.new_hash.startswith(PREFIX)
    assert (await pool.verify(PASSWORD, result.new_hash)).ok is True
    assert await pool.verify("wrong password", old) == VerifyResult(ok=False, new_hash=None)


async def test_hash_from_a_weaker_pool_is_upgraded_by_the_stronger_one(pool: HashingPool) -> None:
    weak_pool = HashingPool(
        Argon2Parameters(19456, 1, 1), workers=1, max_waiting=0, wait_timeout_seconds=5
    )
    try:
        old = await weak_pool.hash(PASSWORD)
    finally:
        weak_pool.close()
    assert old.startswith("$argon2id$v=19$m=19456,t=1,p=1$")

    result = await pool.verify(PASSWORD, old)
    assert result.ok is True
    assert result.new_hash is not None
    assert result.new_hash.startswith(PREFIX)


@pytest.mark.parametrize("stronger", [{"rounds": 3}, {"memory_cost": 32768}])
async def test_stronger_argon2_hash_is_never_downgraded(
    pool: HashingPool, stronger: dict[str, int]
) -> None:
    params = {"type": "ID", "memory_cost": 19456, "rounds": 2, "parallelism": 1, **stronger}
    strong = argon2.using(**params).hash(PASSWORD)
    assert await pool.verify(PASSWORD, strong) == VerifyResult(ok=True, new_hash=None)


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "garbage",
        "$argon2id$",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
        "$argon2id$v=19$m=19456,t=2,p=1$!!!!$!!!!",
        "$argon2xx$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$2b$04$tooshort",
        "$1$md5crypt$unsupportedscheme",
        "plaintext-password",
    ],
)
async def test_corrupt_stored_hash_is_a_failed_verify_not_an_exception(
    pool: HashingPool, stored: str
) -> None:
    assert await pool.verify(PASSWORD, stored) == VerifyResult(ok=False, new_hash=None)


async def test_truncated_real_hash_is_a_failed_verify(pool: HashingPool) -> None:
    hashed = await pool.hash(PASSWORD)
    for broken in (hashed[:-10], hashed[: len(PREFIX)], hashed.replace("argon2id", "argon2")):
        assert await pool.verify(PASSWORD, broken) == VerifyResult(ok=False, new_hash=None)


async def test_plaintext_stored_password_is_not_accepted(pool: HashingPool) -> None:
    assert await pool.verify(PASSWORD, PASSWORD) == VerifyResult(ok=False, new_hash=None)


async def test_dummy_verify_runs_a_real_verify_on_the_pool(pool: HashingPool) -> None:
    calls: list[tuple[str, str]] = []
    original = pool._verify_sync

    def spy(password: str, stored_hash: str) -> tuple[bool, str | None]:
        calls.append((password, stored_hash))
        return original(password, stored_hash)

    pool._verify_sync = spy  # type: ignore[method-assign]
    await pool.dummy_verify("whatever")
    assert len(calls) == 1
    password, stored = calls[0]
    assert password == "whatever"
    assert stored.startswith(PREFIX)  # the warmed dummy hash, at full cost
    assert pool.in_flight == 0


async def test_start_computes_a_dummy_hash_at_full_cost() -> None:
    hashing = make_pool(workers=1, max_waiting=0)
    try:
        await hashing.start()
        assert hashing._dummy_hash.startswith(PREFIX)
    finally:
        hashing.close()


async def test_hashing_does_not_run_on_the_event_loop_thread(pool: HashingPool) -> None:
    threads: list[str] = []
    original = pool._context

    class Recorder:
        def hash(self, password: str) -> str:
            threads.append(threading.current_thread().name)
            result: str = original.hash(password)
            return result

    pool._context = Recorder()
    await pool.hash(PASSWORD)
    assert len(threads) == 1
    assert threads[0] != threading.current_thread().name
    assert threads[0].startswith("argon2")


# --- capacity ------------------------------------------------------------------------


async def test_busy_when_the_only_slot_is_taken_and_nobody_may_wait(
    gated: GatedPoolFactory,
) -> None:
    # A long wait timeout: the refusal must come at once, not after waiting for a slot.
    hashing, gate = await gated(max_waiting=0, wait_timeout_seconds=30.0)
    running = asyncio.create_task(hashing.hash(PASSWORD))
    await wait_until_running(gate)
    assert hashing.in_flight == 1

    with pytest.raises(HashingBusy):
        await asyncio.wait_for(hashing.hash("another password"), timeout=2)
    with pytest.raises(HashingBusy):
        await asyncio.wait_for(hashing.verify(PASSWORD, "$argon2id$whatever"), timeout=2)
    with pytest.raises(HashingBusy):
        await asyncio.wait_for(hashing.dummy_verify(PASSWORD), timeout=2)
    assert gate.calls == 1  # the refused calls never reached a thread
    assert hashing.in_flight == 1

    gate.opened.set()
    assert (await running).startswith(PREFIX)
    assert hashing.in_flight == 0
    # Capacity is back once the job is done.
    assert (await hashing.hash(PASSWORD)).startswith(PREFIX)


async def test_has_capacity_until_every_slot_and_waiting_place_is_taken(
    gated: GatedPoolFactory,
) -> None:
    hashing, gate = await gated(max_waiting=1, wait_timeout_seconds=5.0)
    assert hashing.has_capacity()
    running = asyncio.create_task(hashing.hash(PASSWORD))
    await wait_until_running(gate)
    assert hashing.has_capacity()  # one caller may still wait
    waiting = asyncio.create_task(hashing.hash("second"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not hashing.has_capacity()
    with pytest.raises(HashingBusy):
        await hashing.verify(PASSWORD, "$argon2id$whatever")

    gate.opened.set()
    await running
    await waiting
    assert hashing.has_capacity()


async def test_busy_after_wait_timeout_when_the_slot_stays_taken(gated: GatedPoolFactory) -> None:
    hashing, gate = await gated(max_waiting=1, wait_timeout_seconds=0.05)
    running = asyncio.create_task(hashing.hash(PASSWORD))
    await wait_until_running(gate)

    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(HashingBusy):
        await hashing.hash("waits, then gives up")
    assert loop.time() - started >= 0.04
    assert gate.calls == 1
    assert hashing.in_flight == 1  # the waiter left the queue

    gate.opened.set()
    assert (await running).startswith(PREFIX)
    assert hashing.in_flight == 0


async def test_waiter_gets_the_slot_when_the_job_finishes_within_the_timeout(
    gated: GatedPoolFactory,
) -> None:
    hashing, gate = await gated(max_waiting=1, wait_timeout_seconds=5.0)
    running = asyncio.create_task(hashing.hash(PASSWORD))
    await wait_until_running(gate)
    waiting = asyncio.create_task(hashing.hash("second"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert hashing.in_flight == 2
    assert not waiting.done()
    assert gate.calls == 1

    gate.opened.set()
    assert (await running).startswith(PREFIX)
    assert (await waiting).startswith(PREFIX)
    assert gate.calls == 2
    assert hashing.in_flight == 0


async def test_cancelled_caller_keeps_the_slot_until_its_thread_finishes(
    gated: GatedPoolFactory,
) -> None:
    hashing, gate = await gated(max_waiting=1, wait_timeout_seconds=0.05)
    running = asyncio.create_task(hashing.hash(PASSWORD))
    await wait_until_running(gate)

    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert hashing.in_flight == 0  # the caller is gone...

    # ...but its argon2 job still runs, so the slot is still taken: a new caller waits
    # for the whole timeout and is refused instead of starting a second job.
    # (The outer timeout only turns a regression into a failure instead of a hang.)
    with pytest.raises(HashingBusy):
        await asyncio.wait_for(hashing.hash("next"), timeout=2)
    assert gate.calls == 1

    gate.opened.set()
    # The slot comes back when the thread finishes, through the job's done callback.
    for _ in range(200):
        if not hashing._slots.locked():
            break
        await asyncio.sleep(0.01)
    assert not hashing._slots.locked()
    assert (await hashing.hash("next")).startswith(PREFIX)
    assert gate.calls == 2


# --- the dummy's cost follows the stored hashes ----------------------------------------

CHEAP = "$argon2id$v=19$m=1024,t=1,p=1$"
DEARER = "$argon2id$v=19$m=3072,t=1,p=1$"
KEY = bytes(32)
WRONG = "not the password"


def stored_hash(prefix: str) -> str:
    """A real hash with the parameters `prefix` names (what an older setting stored)."""
    memory, rounds, lanes = (int(v.split("=")[1]) for v in prefix.split("$")[3].split(","))
    hashed: str = argon2.using(
        type="ID", memory_cost=memory, rounds=rounds, parallelism=lanes
    ).hash(PASSWORD)
    return hashed


async def test_unknown_names_draw_the_dummy_cost_from_the_stored_hashes(
    pool: HashingPool,
) -> None:
    population = [stored_hash(CHEAP)] * 30 + [stored_hash(DEARER)] * 10
    await pool.use_population(population, KEY)
    draws = [cost_class(pool.dummy_hash_for(f"ghost-{n}")) for n in range(4000)]
    # Exactly the stored parameters (m, t, p), never the configured (stronger) ones ...
    assert set(draws) == {CHEAP, DEARER}
    # ... in the stored proportions ...
    assert abs(draws.count(DEARER) / len(draws) - 0.25) < 0.03
    # ... and each name keeps its draw, on another replica with the same key too.
    assert [cost_class(pool.dummy_hash_for(f"ghost-{n}")) for n in range(4000)] == draws
    replica = make_pool(workers=1)
    try:
        await replica.use_population(list(reversed(population)), KEY)
        assert [cost_class(replica.dummy_hash_for(f"ghost-{n}")) for n in range(4000)] == draws
    finally:
        replica.close()


async def test_dummy_verify_verifies_against_the_names_draw(pool: HashingPool) -> None:
    await pool.use_population([stored_hash(CHEAP), stored_hash(DEARER)], KEY)
    calls: list[str] = []
    original = pool._verify_sync

    def spy(password: str, stored: str) -> tuple[bool, str | None]:
        calls.append(stored)
        return original(password, stored)

    pool._verify_sync = spy  # type: ignore[method-assign,assignment]  # spies on a private step
    for name in ("ghost", "nobody", "x"):
        await pool.dummy_verify(WRONG, name)
        assert calls[-1] == pool.dummy_hash_for(name)


async def test_without_stored_hashes_the_dummy_keeps_the_configured_cost(
    pool: HashingPool,
) -> None:
    await pool.use_population(["not a hash", "$unknown$scheme"], KEY)
    assert pool.dummy_hash_for("ghost").startswith(PREFIX)
    await pool.use_population([stored_hash(CHEAP)], KEY)
    assert cost_class(pool.dummy_hash_for("ghost")) == CHEAP


async def test_unknown_user_costs_what_a_wrong_password_costs_with_mixed_parameters(
    pool: HashingPool,
) -> None:
    """CPU time, not wall time: half the users at one cost, half at three times that."""
    stored = [stored_hash(CHEAP), stored_hash(DEARER)]
    await pool.use_population(stored, KEY)
    for warm_up in stored:
        await pool.verify(WRONG, warm_up)

    async def cpu_seconds(verify: Awaitable[object]) -> float:
        started = time.process_time()
        await verify
        return time.process_time() - started

    # Interleaved, so that any drift of the machine's speed hits both sides alike.
    wrong_password = unknown_user = 0.0
    for n in range(500):
        wrong_password += await cpu_seconds(pool.verify(WRONG, stored[n % 2]))
        unknown_user += await cpu_seconds(pool.dummy_verify(WRONG, f"ghost-{n}"))
    assert 0.9 <= unknown_user / wrong_password <= 1.1, (unknown_user, wrong_password)


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """One run of the service (a process lifetime) with `settings`."""
    application = create_app(settings)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
            yield application, http


@at_the_argon2_floor
async def test_after_a_cost_increase_unknown_users_cost_the_stored_parameters(
    settings: Settings,
) -> None:
    """The finding: users hashed at the floor, restart with stronger defaults."""
    async with serving(settings) as (first_run, client):
        for n in range(3):
            await register(client, f"user{n}")
        key = await refresh_hash_population(first_run.state.services)
    floor = f"$argon2id$v=19$m={OWASP_MIN_MEMORY_KIB},t={OWASP_MIN_TIME_COST},p=1$"
    stronger = settings.model_copy(
        update={"password_hash_memory_kib": 2 * OWASP_MIN_MEMORY_KIB, "password_hash_time_cost": 3}
    )
    async with serving(stronger) as (app, client):
        verified: list[str] = []
        pool = app.state.services.hasher
        original = pool._verify_sync

        def spy(password: str, stored: str) -> tuple[bool, str | None]:
            verified.append(stored)
            result: tuple[bool, str | None] = original(password, stored)
            return result

        pool._verify_sync = spy
        try:
            for username in ("ghost", "user0", "nobody", "user1"):
                response = await password_grant(client, username, WRONG)
                assert response.status_code == 400, response.text
            assert [cost_class(h) for h in verified] == [floor] * 4
            # New users are hashed at the new cost; the next refresh makes it a draw too.
            for n in range(3):
                await register(client, f"newcomer{n}")
            # The draw key is durable: the same after a restart (and on every replica).
            assert await refresh_hash_population(app.state.services) == key
            draws = {cost_class(pool.dummy_hash_for(f"ghost-{n}")) for n in range(200)}
            assert draws == {floor, cost_class(await pool.hash(PASSWORD))}
        finally:
            async with direct_sql(app) as connection:
                for table in ("refresh_tokens", "sessions", "revoked_access_tokens", "users"):
                    await connection.execute(text(f"DELETE FROM {table}"))


async def test_a_service_secret_is_made_once_and_then_kept(settings: Settings) -> None:
    async with serving(settings) as (app, _):
        secrets = app.state.services.db.secrets
        first = await secrets.ensure("test_secret", "first candidate")
        second = await secrets.ensure("test_secret", "second candidate")
        assert first == second == "first candidate"
        async with direct_sql(app) as connection:
            await connection.execute(text("DELETE FROM service_secrets WHERE name = 'test_secret'"))

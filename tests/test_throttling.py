"""Failed-login throttling: per pair, account and IP; no victim lockout; before argon2."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from redis import asyncio as redis_asyncio

from auth_service.security.passwords import VerifyResult
from auth_service.stores.throttle import (
    LoginCounters,
    LoginLimits,
    MemoryThrottleStore,
    RedisThrottleStore,
    ThrottleStore,
)
from tests.conftest import PASSWORD, Backend, FakeClock, access_token, at_the_argon2_floor, register
from tests.test_token_endpoint import CountingHasher, FullHasher

WRONG = "not the right password at all"


async def attempt(
    client: httpx.AsyncClient, username: str, password: str, ip: str | None = None
) -> httpx.Response:
    headers = {"X-Forwarded-For": ip} if ip else {}
    form = {"grant_type": "password", "username": username, "password": password}
    return await client.post("/token", data=form, headers=headers)


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json() == {
        "error": "too_many_requests",
        "error_description": "too many attempts, retry later",
    }
    assert 1 <= int(response.headers["retry-after"]) <= 900
    assert response.headers["cache-control"] == "no-store"


async def test_pair_limit_refuses_even_the_right_password(client: httpx.AsyncClient) -> None:
    await register(client)
    for _ in range(10):
        assert (await attempt(client, "alice", WRONG)).status_code == 400
    assert_throttled(await attempt(client, "alice", PASSWORD))


async def test_throttling_looks_the_same_for_unknown_users(client: httpx.AsyncClient) -> None:
    await register(client)
    for username in ("alice", "ghost"):
        for _ in range(10):
            await attempt(client, username, WRONG)
    known, unknown = await attempt(client, "alice", WRONG), await attempt(client, "ghost", WRONG)
    assert_throttled(known)
    assert_throttled(unknown)
    assert known.json() == unknown.json()


async def test_throttled_attempts_cost_no_argon2_work(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    counting = CountingHasher(app.state.services.hasher)
    app.state.services = dataclasses.replace(app.state.services, hasher=counting)
    for _ in range(10):
        await attempt(client, "alice", WRONG)
    assert counting.verifies == 10
    for _ in range(5):
        assert_throttled(await attempt(client, "alice", WRONG))
    assert counting.verifies == 10


async def test_throttled_attempts_stay_429_when_the_hashing_pool_is_full(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    for _ in range(10):
        await attempt(client, "alice", WRONG)
    full = FullHasher(app.state.services.hasher)
    app.state.services = dataclasses.replace(app.state.services, hasher=full)
    assert_throttled(await attempt(client, "alice", PASSWORD))
    assert (await attempt(client, "bob", PASSWORD)).status_code == 503


async def test_success_resets_the_pair_counter(client: httpx.AsyncClient) -> None:
    await register(client)
    for _ in range(9):
        await attempt(client, "alice", WRONG)
    assert (await attempt(client, "alice", PASSWORD)).status_code == 200
    for _ in range(9):
        assert (await attempt(client, "alice", WRONG)).status_code == 400
    assert (await attempt(client, "alice", PASSWORD)).status_code == 200


@pytest.mark.settings(trusted_proxies=["127.0.0.1/32"])
async def test_attack_from_many_addresses_does_not_lock_out_the_owner(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    owner_ip = "198.51.100.7"
    assert (await attempt(client, "alice", PASSWORD, owner_ip)).status_code == 200
    # 60 attackers, one guess each: no pair or IP limit is reached, the account limit is.
    for n in range(60):
        response = await attempt(client, "alice", WRONG, f"203.0.113.{n}")
        assert response.status_code in {400, 429}
    # Strangers are stopped before argon2, even with the right password ...
    assert_throttled(await attempt(client, "alice", PASSWORD, "192.0.2.99"))
    # ... but the owner, where they logged in before, is not.
    assert (await attempt(client, "alice", PASSWORD, owner_ip)).status_code == 200


@pytest.mark.settings(trusted_proxies=["127.0.0.1/32"], login_max_failures_per_ip=5)
async def test_credential_stuffing_from_one_address_is_limited(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    for n in range(5):
        await attempt(client, f"victim{n}", WRONG, "203.0.113.50")
    assert_throttled(await attempt(client, "alice", PASSWORD, "203.0.113.50"))
    assert (await attempt(client, "alice", PASSWORD, "203.0.113.51")).status_code == 200


async def test_forwarded_for_is_ignored_without_trusted_proxies(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    for n in range(10):
        await attempt(client, "alice", WRONG, f"203.0.113.{n}")  # a forged header per try
    assert_throttled(await attempt(client, "alice", PASSWORD, "198.51.100.1"))


@pytest.mark.settings(trusted_proxies=["127.0.0.1/32"])
async def test_only_the_rightmost_untrusted_hop_counts(client: httpx.AsyncClient) -> None:
    await register(client)
    # The client controls everything left of what our proxy appended.
    for n in range(10):
        await attempt(client, "alice", WRONG, f"10.9.9.{n}, 203.0.113.9")
    assert_throttled(await attempt(client, "alice", PASSWORD, "10.0.0.1, 203.0.113.9"))
    assert (await attempt(client, "alice", PASSWORD, "203.0.113.10")).status_code == 200


class InstantlyWrongHasher(CountingHasher):
    """Every verify fails at once: ten failures fit in a 1 s window on a busy machine."""

    async def verify(self, password: str, stored_hash: str) -> VerifyResult:
        self.verifies += 1
        return VerifyResult(ok=False)


@pytest.mark.settings(login_throttle_window_seconds=1)
async def test_the_refusal_is_temporary(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock, backend: Backend
) -> None:
    await register(client)
    real = app.state.services.hasher
    app.state.services = dataclasses.replace(app.state.services, hasher=InstantlyWrongHasher(real))
    for _ in range(10):
        assert (await attempt(client, "alice", WRONG)).status_code == 400
    app.state.services = dataclasses.replace(app.state.services, hasher=real)
    throttled = await attempt(client, "alice", PASSWORD)
    assert_throttled(throttled)
    assert throttled.headers["retry-after"] == "1"
    clock.advance(1)  # the in-process counters end on the injected clock
    if backend.redis_url is not None:
        await asyncio.sleep(1.05)  # Redis ends the window on its own clock (PEXPIRE)
    assert (await attempt(client, "alice", PASSWORD)).status_code == 200


@pytest.mark.settings(register_max_per_ip=3)
async def test_registration_is_throttled_per_address(client: httpx.AsyncClient) -> None:
    for n in range(3):
        await register(client, f"user{n}")
    response = await client.post("/register", json={"username": "user9", "password": PASSWORD})
    assert response.status_code == 429
    assert response.json()["error"] == "too_many_requests"
    assert "retry-after" in response.headers


async def use_counting_hasher(app: FastAPI) -> CountingHasher:
    counting = CountingHasher(app.state.services.hasher)
    app.state.services = dataclasses.replace(app.state.services, hasher=counting)
    return counting


def password_change_failures(app: FastAPI) -> float:
    value = app.state.services.audit.registry.get_sample_value(
        "auth_events_total", {"event": "password_change", "outcome": "failure"}
    )
    return value or 0.0


@at_the_argon2_floor
async def test_concurrent_guesses_reach_argon2_only_up_to_the_pair_limit(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    counting = await use_counting_hasher(app)
    responses = await asyncio.gather(*(attempt(client, "alice", WRONG) for _ in range(60)))
    assert counting.verifies == 10
    assert sorted(r.status_code for r in responses) == [400] * 10 + [429] * 50
    for response in responses:
        if response.status_code == 429:
            assert_throttled(response)


@at_the_argon2_floor
async def test_concurrent_right_logins_beyond_the_pair_limit_wait_instead_of_failing(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    # In flight, each counts against the pair until it proves right; the rest wait.
    responses = await asyncio.gather(*(attempt(client, "alice", PASSWORD) for _ in range(16)))
    assert [r.status_code for r in responses] == [200] * 16


@pytest.mark.settings(trusted_proxies=["127.0.0.1/32"], login_max_failures_per_account=15)
@at_the_argon2_floor
async def test_one_address_hammering_does_not_lock_the_owner_out_elsewhere(
    client: httpx.AsyncClient,
) -> None:
    await register(client)
    attacker = "203.0.113.66"
    await asyncio.gather(*(attempt(client, "alice", WRONG, attacker) for _ in range(60)))
    assert_throttled(await attempt(client, "alice", PASSWORD, attacker))
    # The attacker's address counted at most its pair limit (10) against the account.
    assert (await attempt(client, "alice", PASSWORD, "198.51.100.20")).status_code == 200


async def test_a_login_refused_before_argon2_is_not_counted(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    full = FullHasher(app.state.services.hasher)
    app.state.services = dataclasses.replace(app.state.services, hasher=full)
    for _ in range(15):
        assert (await attempt(client, "alice", WRONG)).status_code == 503
    app.state.services = dataclasses.replace(app.state.services, hasher=full.inner)
    assert (await attempt(client, "alice", PASSWORD)).status_code == 200


@pytest.mark.settings(register_max_per_ip=3)
@at_the_argon2_floor
async def test_concurrent_registrations_stop_at_the_limit(client: httpx.AsyncClient) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/register", json={"username": f"user{n}", "password": PASSWORD})
            for n in range(12)
        )
    )
    assert sorted(r.status_code for r in responses) == [201] * 3 + [429] * 9


async def change_password(client: httpx.AsyncClient, token: str, current: str) -> httpx.Response:
    body = {"current_password": current, "new_password": "a different long passphrase 42"}
    headers = {"Authorization": f"Bearer {token}"}
    return await client.post("/users/me/password", json=body, headers=headers)


@at_the_argon2_floor
async def test_password_change_is_not_a_password_oracle(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    token = await access_token(client)
    counting = await use_counting_hasher(app)
    responses = await asyncio.gather(*(change_password(client, token, WRONG) for _ in range(60)))
    assert counting.verifies == 10
    assert sorted(r.status_code for r in responses) == [400] * 10 + [429] * 50
    assert_throttled(next(r for r in responses if r.status_code == 429))
    # Both the wrong guesses and the refusals are audited.
    assert password_change_failures(app) == 60


async def test_password_change_failures_count_in_the_login_throttle(
    client: httpx.AsyncClient,
) -> None:
    token = await access_token(client)
    for _ in range(5):
        assert (await change_password(client, token, WRONG)).status_code == 400
    for _ in range(5):
        assert (await attempt(client, "alice", WRONG)).status_code == 400
    assert_throttled(await attempt(client, "alice", PASSWORD))
    assert_throttled(await change_password(client, token, PASSWORD))


async def test_a_right_current_password_is_not_counted(client: httpx.AsyncClient) -> None:
    token = await access_token(client)
    for _ in range(9):
        await attempt(client, "alice", WRONG)
    assert (await change_password(client, token, PASSWORD)).status_code == 204
    for _ in range(9):
        assert (await attempt(client, "alice", WRONG)).status_code == 400


@pytest.fixture
async def throttle_store(backend: Backend) -> AsyncIterator[ThrottleStore]:
    """The store alone, on the backend's Redis or in memory."""
    if backend.redis_url is None:
        yield MemoryThrottleStore()
        return
    client = redis_asyncio.Redis.from_url(backend.redis_url)
    try:
        yield RedisThrottleStore(client, prefix=backend.redis_prefix)
    finally:
        await client.aclose()


async def end_window(store: ThrottleStore, backend: Backend, key: str) -> None:
    """What the passing of time does to one counter."""
    if isinstance(store, MemoryThrottleStore):
        store._windows.pop(key)
    else:
        async with redis_asyncio.Redis.from_url(str(backend.redis_url)) as client:
            await client.delete(f"{backend.redis_prefix}throttle:{key}")


async def test_one_source_adds_at_most_its_pair_limit_to_an_account_window(
    throttle_store: ThrottleStore, backend: Backend
) -> None:
    limits = LoginLimits(pair=3, account=5, ip=1000, window_seconds=60)
    attacker = LoginCounters("pair:a", "account:victim", "ip:a", "known:a")
    stranger = LoginCounters("pair:b", "account:victim", "ip:b", "known:b")
    for _ in range(2):  # two pair windows within one account window
        for _ in range(3):
            assert (await throttle_store.reserve_login(attacker, limits)).retry_after == 0
        assert (await throttle_store.reserve_login(attacker, limits)).retry_after >= 1
        await end_window(throttle_store, backend, attacker.pair)
    # 6 guesses from one source, but the account counts 3 of them: 2 more fit.
    for _ in range(2):
        assert (await throttle_store.reserve_login(stranger, limits)).retry_after == 0
    assert (await throttle_store.reserve_login(stranger, limits)).retry_after >= 1


async def test_a_released_reservation_gives_its_place_back(
    throttle_store: ThrottleStore,
) -> None:
    limits = LoginLimits(pair=2, account=100, ip=1000, window_seconds=60)
    counters = LoginCounters("pair:r", "account:r", "ip:r", "known:r")
    for _ in range(5):
        reservation = await throttle_store.reserve_login(counters, limits)
        assert reservation.retry_after == 0
        await throttle_store.release_login(counters, reservation, succeeded=False, known_seconds=60)
    first = await throttle_store.reserve_login(counters, limits)
    second = await throttle_store.reserve_login(counters, limits)
    assert (first.retry_after, second.retry_after) == (0, 0)
    assert (await throttle_store.reserve_login(counters, limits)).retry_after >= 1
    await throttle_store.release_login(counters, first, succeeded=True, known_seconds=60)
    assert (await throttle_store.reserve_login(counters, limits)).retry_after == 0

"""A burst of concurrent logins against a real process: clean answers, bounded memory.

One `auth-service serve` process (SQLite, in-process state) with a hashing pool of 2
threads and 16 waiting slots gets 240 password grants at once: right and wrong passwords
and unknown users. Every answer must be 200, 400, 429 or 503 (with Retry-After), and the
process's peak resident memory must stay within what two argon2 jobs can use.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FLOOR_ARGON2, PASSWORD
from tests.processes import Replica, argon2_env, running_service, service_env

pytestmark = pytest.mark.slow

START_TIMEOUT_SECONDS = 20.0
BURST_TIMEOUT_SECONDS = 60.0
REQUESTS = 240
POOL_SIZE = 2
MAX_WAITING = 16
MIB = 1024 * 1024
ARGON2_MIB = FLOOR_ARGON2["password_hash_memory_kib"] / 1024  # 19 MiB: OWASP's floor
# Peak RSS may exceed the baseline measured after start-up by at most:
# - POOL_SIZE x ARGON2_MIB x 2: each hashing thread holds one argon2 memory block while it
#   runs, and glibc may keep a freed block resident in that thread's malloc arena for the
#   next job (x 2), so each thread accounts for at most two blocks;
# - 64 MiB of slack for what does not depend on the pool: 240 connections' buffers, request
#   and response objects, SQLAlchemy and log records.
# An unbounded pool (a thread per waiting request) would need REQUESTS x 19 MiB, ~4.5 GiB.
SLACK_MIB = 64


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replica]:
    directory = tmp_path_factory.mktemp("load")
    env = service_env(
        directory,
        **argon2_env(FLOOR_ARGON2),  # the bound is in units of one hash's memory
        AUTH_DATABASE_URL=f"sqlite+aiosqlite:///{directory / 'auth.db'}",
        AUTH_HASH_POOL_SIZE=str(POOL_SIZE),
        AUTH_HASH_MAX_WAITING=str(MAX_WAITING),
        AUTH_HASH_WAIT_TIMEOUT_SECONDS="2",
        AUTH_LOGIN_MAX_FAILURES_PER_PAIR="100",
        AUTH_LOGIN_MAX_FAILURES_PER_ACCOUNT="100",
        AUTH_LOGIN_MAX_FAILURES_PER_IP="100000",
        AUTH_LOG_LEVEL="WARNING",
    )
    with running_service("load", env, directory, start_timeout=START_TIMEOUT_SECONDS) as replica:
        yield replica
        print(f"----- service output -----\n{replica.output()}")


def memory_kib(pid: int, field: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process, in KiB, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    match = re.search(rf"^{field}:\s+(\d+) kB$", status, re.MULTILINE)
    assert match, status
    return int(match.group(1))


async def login(http: httpx.AsyncClient, username: str, password: str) -> httpx.Response:
    form = {"grant_type": "password", "username": username, "password": password}
    return await http.post("/token", data=form)


async def test_a_login_burst_gets_clean_answers_in_bounded_memory(service: Replica) -> None:
    assert service.process is not None
    pid = service.process.pid
    limits = httpx.Limits(max_connections=REQUESTS + 10, max_keepalive_connections=REQUESTS + 10)
    async with httpx.AsyncClient(base_url=service.url, timeout=30.0, limits=limits) as http:
        username = f"load-{secrets.token_hex(6)}"
        registered = await http.post("/register", json={"username": username, "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        assert (await login(http, username, PASSWORD)).status_code == 200
        # Start-up, one hash and one verify are behind us: what the process needs at rest.
        baseline_kib = memory_kib(pid, "VmRSS")

        attempts = [
            (username, PASSWORD)
            if i % 3 == 0
            else (username, f"wrong password number {i}")
            if i % 3 == 1
            else (f"ghost-{i}-{secrets.token_hex(3)}", PASSWORD)
            for i in range(REQUESTS)
        ]
        async with asyncio.timeout(BURST_TIMEOUT_SECONDS):
            responses = await asyncio.gather(*(login(http, *attempt) for attempt in attempts))

        peak_kib = memory_kib(pid, "VmHWM")
        statuses = Counter(response.status_code for response in responses)
        print(f"statuses {dict(statuses)}; baseline {baseline_kib} KiB, peak {peak_kib} KiB")
        assert service.process.poll() is None, "the service died under the burst"
        assert set(statuses) <= {200, 400, 429, 503}, statuses
        for response in responses:
            assert response.json()["error" if response.status_code != 200 else "access_token"]
            if response.status_code == 503:
                assert int(response.headers["retry-after"]) >= 1, response.headers
        # The pool both refused the excess and served what it admitted.
        assert statuses[503] > 0, statuses
        assert statuses[200] + statuses[400] > 0, statuses

        bound_kib = baseline_kib + (POOL_SIZE * ARGON2_MIB * 2 + SLACK_MIB) * 1024
        assert peak_kib <= bound_kib, (
            f"peak RSS {peak_kib / 1024:.0f} MiB exceeds {bound_kib / 1024:.0f} MiB "
            f"(baseline {baseline_kib / 1024:.0f} MiB)"
        )
        # And it is still serving once the burst is over.
        assert (await login(http, username, PASSWORD)).status_code == 200

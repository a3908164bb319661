"""At start, `serve` and `migrate` wait for the database and Redis with backoff, bounded.

A container pointed at a closed port must not exit at once with a traceback (and be
restarted in a tight loop): it retries for AUTH_STARTUP_WAIT_SECONDS, logging a line per
attempt, then exits 1 with one line naming the unreachable dependency and the setting.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from auth_service.startup import Backoff, DependencyUnreachableError, wait_until_reachable
from tests.processes import closed_port, service_env

# Generous: the bound under test is 1.5 s; a slow shared machine needs the rest.
PROCESS_TIMEOUT_SECONDS = 60
SECRET_PASSWORD = "hunter2-not-for-logs"


class FakeClock:
    """time.monotonic and asyncio.sleep stand-ins: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 100.0
        self.pauses: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


async def test_retries_with_exponential_backoff_until_the_probe_succeeds() -> None:

    clock = FakeClock()
    failures = iter([ConnectionRefusedError("refused")] * 4)

    async def probe() -> None:
        error = next(failures, None)
        if error is not None:
            raise error

    attempts = await wait_until_reachable(
        "the database", probe, bound_seconds=60, clock=clock, sleep=clock.sleep
    )
    assert attempts == 5
    assert clock.pauses == [0.25, 0.5, 1.0, 2.0]


async def test_gives_up_at_the_bound_naming_what_and_the_setting() -> None:

    clock = FakeClock()

    async def probe() -> None:
        raise ConnectionRefusedError("[Errno 111] Connect call failed")

    with pytest.raises(DependencyUnreachableError) as raised:
        await wait_until_reachable(
            "AUTH_DATABASE_URL: cannot connect to db:5432/auth",
            probe,
            bound_seconds=20,
            backoff=Backoff(first=1, factor=2, longest=4),
            clock=clock,
            sleep=clock.sleep,
        )
    # 1 + 2 + 4 + 4 + 4 + 4 (cut to the 1 s left) + 1 = 20 s, then one last attempt fails.
    assert clock.pauses == [1, 2, 4, 4, 4, 4, 1]
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("AUTH_DATABASE_URL: cannot connect to db:5432/auth within 20 s")
    assert "AUTH_STARTUP_WAIT_SECONDS" in message
    assert "ConnectionRefusedError" in message


async def test_bad_credentials_fail_at_once_without_waiting() -> None:
    class Original(Exception):
        sqlstate = "28P01"  # invalid_password

    clock = FakeClock()

    async def probe() -> None:
        raise OperationalError("connect", {}, Original("password authentication failed"))

    with pytest.raises(DependencyUnreachableError) as raised:
        await wait_until_reachable(
            "the database", probe, bound_seconds=60, clock=clock, sleep=clock.sleep
        )
    assert clock.pauses == []
    assert str(raised.value).startswith("the database: OperationalError")


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auth_service", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=PROCESS_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_a_closed_database_port_gives_retries_then_one_line(command: str, tmp_path: Path) -> None:
    closed = closed_port()
    env = service_env(
        tmp_path,
        AUTH_DATABASE_URL=f"postgresql+asyncpg://auth:{SECRET_PASSWORD}@127.0.0.1:{closed}/auth",
        AUTH_STARTUP_WAIT_SECONDS="1.5",
    )
    completed = _run([command], env, tmp_path)
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr
    assert SECRET_PASSWORD not in completed.stderr + completed.stdout
    assert lines[-1].startswith(
        f"auth-service: AUTH_DATABASE_URL: cannot connect to 127.0.0.1:{closed}/auth "
        "within 1.5 s (AUTH_STARTUP_WAIT_SECONDS): ConnectionRefusedError"
    ), lines[-1]
    retries = [line for line in lines if "waiting: AUTH_DATABASE_URL" in line]
    assert len(retries) >= 2, completed.stderr  # it did wait, with backoff
    assert len(lines) < 20, completed.stderr  # not a tight loop of log lines


@pytest.mark.slow
def test_serve_waits_for_a_closed_redis_port_too(tmp_path: Path) -> None:
    closed = closed_port()
    env = service_env(
        tmp_path,
        AUTH_REDIS_URL=f"redis://:{SECRET_PASSWORD}@127.0.0.1:{closed}/0",
        AUTH_STARTUP_WAIT_SECONDS="1",
    )
    completed = _run(["serve"], env, tmp_path)
    assert completed.returncode == 1, completed.stderr
    assert SECRET_PASSWORD not in completed.stderr
    last = completed.stderr.strip().splitlines()[-1]
    expected = f"auth-service: AUTH_REDIS_URL: cannot connect to 127.0.0.1:{closed}/0 within 1 s"
    assert last.startswith(expected), last

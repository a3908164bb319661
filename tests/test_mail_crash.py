"""A real process killed (SIGKILL) with a mail it could not send: a new process sends it.

The mail server is down while the first process runs; the outbox row it wrote with the
registration survives the kill, and the next process delivers it once the server is up.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import PASSWORD
from tests.mailbox import start_mailbox
from tests.processes import Replica, free_port, run_cli, service_env

pytestmark = pytest.mark.slow


def outbox(path: Path) -> list[tuple[int, str | None]]:
    with sqlite3.connect(path) as db:
        return [(int(a), e) for a, e in db.execute("SELECT attempts, last_error FROM mail_outbox")]


async def test_a_killed_process_loses_no_mail(tmp_path: Path) -> None:
    smtp_port = free_port()
    env = service_env(
        tmp_path,
        AUTH_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
        AUTH_MAIL_POLL_SECONDS="0.2",
        AUTH_MAIL_RETRY_BASE_SECONDS="0.2",
        AUTH_MAIL_RETRY_MAX_SECONDS="0.5",
    )
    run_cli(env, tmp_path, "migrate")
    database = tmp_path / "auth.db"
    first = Replica("first", tmp_path / "first.log")
    first.start(env, cwd=tmp_path)
    try:
        first.wait_until_healthy(time.monotonic() + 90)
        async with httpx.AsyncClient(base_url=first.url) as client:
            response = await client.post(
                "/register",
                json={"username": "alice", "password": PASSWORD, "email": "alice@example.com"},
            )
            assert response.status_code == 201, response.text
        for _ in range(1200):  # bounded: the worker tried and failed at least once
            rows = outbox(database)
            if rows and rows[0][1] is not None:
                break
            await asyncio.sleep(0.05)
        assert rows, first.output()
        assert rows[0][1] is not None, first.output()
    finally:
        assert first.process is not None
        first.process.kill()  # SIGKILL: no shutdown, no lease handed back
        first.process.wait()
    assert len(outbox(database)) == 1

    box = await start_mailbox(port=smtp_port)
    second = Replica("second", tmp_path / "second.log")
    try:
        second.start(env, cwd=tmp_path)
        [message] = await box.wait_for(1)
        assert message["Subject"] == "Confirm your email address"
        assert str(message["To"]) == "alice@example.com"
    finally:
        second.stop()
        await box.close()

"""The durable outbox: a down mail server loses nothing and slows no request, a stop or a
crash before sending loses nothing, and workers sharing a database never send one mail
twice while their leases hold. Both backends, a real SMTP server."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from auth_service.repositories import OutboxRow
from auth_service.services.context import ServiceContext
from tests.conftest import Backend, FakeClock, direct_sql, empty_database
from tests.mailbox import (
    mail_settings,
    register_with_email,
    running,
    start_mailbox,
)
from tests.processes import free_port


async def outbox_rows(app: FastAPI) -> list[tuple[int, str | None]]:
    async with direct_sql(app) as sql:
        rows = await sql.execute(text("SELECT attempts, last_error FROM mail_outbox"))
        return [(int(r[0]), r[1]) for r in rows]


async def until(condition: object, app: FastAPI) -> None:
    """Poll (bounded) until `condition(app)` is true."""
    for _ in range(400):
        if await condition(app):  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never held")


async def test_a_down_mail_server_loses_nothing_and_a_restart_delivers(
    backend: Backend, tmp_path: Path, clock: FakeClock
) -> None:
    port = free_port()  # nobody listens here yet
    settings = mail_settings(backend, tmp_path, f"smtp://127.0.0.1:{port}")
    try:
        async with running(settings, clock) as app:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://testserver"
            ) as client:
                # The request commits user and outbox row together and answers; it never
                # waits for the mail server (which is down).
                await register_with_email(client, "alice", "alice@example.com")

            async def deferred(app: FastAPI) -> bool:
                rows = await outbox_rows(app)
                return bool(rows) and rows[0][0] >= 1 and rows[0][1] is not None

            await until(deferred, app)  # tried, failed, kept for later
        # Stopped with the mail unsent. The server comes up; a new process starts.
        box = await start_mailbox(port=port)
        try:
            clock.advance(3600)  # past any backoff
            async with running(settings, clock) as app:
                [message] = await box.wait_for(1)
                assert message["Subject"] == "Confirm your email address"

                async def empty(app: FastAPI) -> bool:
                    return await outbox_rows(app) == []

                await until(empty, app)
        finally:
            await box.close()
    finally:
        await empty_database(settings.effective_database_url)


async def test_a_crash_while_holding_a_mail_delays_it_until_the_lease_ends(
    backend: Backend, tmp_path: Path, clock: FakeClock
) -> None:
    box = await start_mailbox()
    settings = mail_settings(backend, tmp_path, box.url(), mail_lease_seconds=120)
    try:
        async with running(settings, clock) as app:
            services: ServiceContext = app.state.services
            services.mail_queued.clear()
            # A "dead" worker's claim: the row is leased to a process that no longer runs.
            now = clock()
            async with services.db.transaction() as tx:
                await tx.outbox.enqueue(
                    OutboxRow(
                        id="f" * 32,
                        kind="password_changed",
                        user_id=None,
                        recipient="alice@example.com",
                        params=json.dumps({"username": "alice"}),
                        created_at=now,
                        attempts=0,
                        next_attempt_at=now,
                    )
                )
            dead = await services.db.outbox.claim(
                now=now, lease_until=now + timedelta(seconds=120), claim="dead", limit=10
            )
            assert [row.id for row in dead] == ["f" * 32]
            assert (
                await services.db.outbox.claim(now=now, lease_until=now, claim="other", limit=10)
                == []
            )  # leased: nobody else may take it
            clock.advance(121)  # the lease runs out
            services.mail_queued.set()
            [message] = await box.wait_for(1)
            assert message["Subject"] == "Your password was changed"
            assert await services.db.outbox.done("f" * 32, claim="dead") is False  # lost
    finally:
        await box.close()
        await empty_database(settings.effective_database_url)


async def test_concurrent_claims_never_share_a_row(
    backend: Backend, tmp_path: Path, clock: FakeClock
) -> None:
    box = await start_mailbox()
    settings = mail_settings(backend, tmp_path, box.url(), mail_poll_seconds=300)
    try:
        async with running(settings, clock) as app:
            services: ServiceContext = app.state.services
            now = clock() - timedelta(seconds=1)
            async with services.db.transaction() as tx:
                for n in range(12):
                    await tx.outbox.enqueue(
                        OutboxRow(
                            id=f"{n:032d}",
                            kind="password_changed",
                            user_id=None,
                            recipient=f"u{n}@example.com",
                            params="{}",
                            created_at=now,
                            attempts=0,
                            next_attempt_at=now,
                        )
                    )
            lease = clock() + timedelta(minutes=5)
            claims = await asyncio.gather(
                *(
                    services.db.outbox.claim(now=clock(), lease_until=lease, claim=f"c{i}", limit=2)
                    for i in range(8)
                )
            )
            taken = [row.id for rows in claims for row in rows]
            assert len(taken) == len(set(taken))  # no row claimed twice
            # The app's own worker may have taken some before: together, all twelve.
            assert len(taken) + len(box.messages) <= 12
    finally:
        await box.close()
        await empty_database(settings.effective_database_url)


@pytest.mark.slow
async def test_two_workers_on_one_database_send_each_mail_once(
    backend: Backend, tmp_path: Path, clock: FakeClock
) -> None:
    box = await start_mailbox()
    first = mail_settings(backend, tmp_path / "a", box.url(), mail_poll_seconds=0.05)
    second = mail_settings(backend, tmp_path / "b", box.url(), mail_poll_seconds=0.05)
    try:
        async with running(first, clock) as one, running(second, clock) as two:
            clients = [
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
                for app in (one, two)
            ]
            for n in range(16):
                await register_with_email(clients[n % 2], f"user{n}", f"user{n}@example.com")
            await box.wait_for(16)

            async def empty(app: FastAPI) -> bool:
                return await outbox_rows(app) == []

            await until(empty, one)
            await asyncio.sleep(0.5)  # two more polls each: nothing else goes out
            for client in clients:
                await client.aclose()
        recipients = [str(m["To"]) for m in box.messages]
        assert sorted(recipients) == sorted(f"user{n}@example.com" for n in range(16))
    finally:
        await box.close()
        await empty_database(first.effective_database_url)

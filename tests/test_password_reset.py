"""Password reset (OWASP Forgot Password Cheat Sheet) through a real SMTP server.

Every test runs on SQLite + memory and on PostgreSQL + Redis; the mail is read from what
the in-process aiosmtpd server received.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI

from auth_service.services.context import ServiceContext
from auth_service.services.throttling import Throttler
from tests.conftest import PASSWORD, FakeClock, password_grant
from tests.mailbox import (
    PUBLIC_URL,
    Mailbox,
    link_in,
    mail_app,
    mail_client,
    mailbox,
    token_of,
    verified_user,
)

__all__ = ["mail_app", "mail_client", "mailbox"]  # fixtures, imported for pytest

NEW_PASSWORD = "a wholly different passphrase 42"
ACCEPTED = {
    "status": "accepted",
    "detail": "if an account with a verified address matches, a reset link is on its way",
}


async def ask(client: httpx.AsyncClient, **body: str) -> httpx.Response:
    response = await client.post("/password-reset", json=body)
    assert response.status_code == 202, response.text
    assert response.json() == ACCEPTED
    return response


async def reset_mail(box: Mailbox, before: int) -> str:
    """The link of the next reset mail after `before` messages."""
    await box.wait_for(before + 1)
    message = box.messages[before]
    assert message["Subject"] == "Reset your password"
    return link_in(message)


def requests_counted(app: FastAPI, outcome: str) -> float:
    """How many reset requests were queued ("success") or throttled ("failure")."""
    services: ServiceContext = app.state.services
    value = services.audit.registry.get_sample_value(
        "auth_events_total", {"event": "password_reset_request", "outcome": outcome}
    )
    return value or 0.0


async def drained(app: FastAPI) -> None:
    """Wait until the outbox worker has handled every queued row (bounded)."""
    services: ServiceContext = app.state.services
    for _ in range(300):
        if await services.db.outbox.pending() == 0:
            return
        services.mail_queued.set()
        await mailbox_pause()
    raise AssertionError("the outbox never drained")


async def mailbox_pause() -> None:
    import asyncio

    await asyncio.sleep(0.05)


async def confirm(
    client: httpx.AsyncClient, token: str, password: str = NEW_PASSWORD
) -> httpx.Response:
    return await client.post(
        "/password-reset/confirm", json={"token": token, "new_password": password}
    )


async def test_reset_by_email_sets_the_password_ends_sessions_and_notifies(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_user(mail_client, mailbox, "alice", "alice@example.com")
    login = await password_grant(mail_client, "alice")
    access, refresh = login.json()["access_token"], login.json()["refresh_token"]
    before = len(mailbox.messages)
    await ask(mail_client, email="Alice@EXAMPLE.com")  # canonical form matches
    link = await reset_mail(mailbox, before)
    assert link.startswith(f"{PUBLIC_URL}/password-reset/confirm?token=")
    assert str(mailbox.messages[before]["To"]) == "alice@example.com"

    response = await confirm(mail_client, token_of(link))
    assert response.status_code == 204, response.text
    assert "set-cookie" not in response.headers  # not logged in
    assert (await password_grant(mail_client, "alice")).status_code == 400
    assert (await password_grant(mail_client, "alice", NEW_PASSWORD)).status_code == 200
    me = await mail_client.get("/users/me", headers={"Authorization": f"Bearer {access}"})
    assert me.status_code == 401  # every session ended
    refreshed = await mail_client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": refresh}
    )
    assert refreshed.status_code == 400
    await mailbox.wait_for(before + 2)
    assert mailbox.messages[before + 1]["Subject"] == "Your password was changed"
    # Single use.
    assert (
        await confirm(mail_client, token_of(link), "yet another passphrase 77")
    ).status_code == 400


async def test_reset_by_username(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_user(mail_client, mailbox, "bob", "bob@example.com")
    before = len(mailbox.messages)
    await ask(mail_client, username="BOB")
    link = await reset_mail(mailbox, before)
    assert (await confirm(mail_client, token_of(link))).status_code == 204


async def test_links_come_from_the_public_url_never_the_host_header(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_user(mail_client, mailbox, "carol", "carol@example.com")
    before = len(mailbox.messages)
    await mail_client.post(
        "/password-reset",
        json={"email": "carol@example.com"},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example"},
    )
    link = await reset_mail(mailbox, before)
    assert link.startswith(f"{PUBLIC_URL}/")
    assert "evil" not in mailbox.messages[before].as_string()


async def test_unknown_and_unverified_accounts_get_the_same_answer_and_no_mail(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_user(mail_client, mailbox, "dave", "dave@example.com")
    response = await mail_client.post(
        "/register", json={"username": "erin", "password": PASSWORD, "email": "erin@example.com"}
    )
    assert response.status_code == 201
    await drained(mail_app)
    before = len(mailbox.messages)
    answers = [
        await ask(mail_client, email="dave@example.com"),
        await ask(mail_client, email="nobody@example.com"),
        await ask(mail_client, email="erin@example.com"),  # unverified: no reset to it
        await ask(mail_client, username="nobody"),
        await ask(mail_client, username="erin"),
    ]

    def shape(r: httpx.Response) -> tuple[int, bytes, tuple[str, ...]]:
        return r.status_code, r.content, tuple(sorted(set(r.headers) - {"date", "x-request-id"}))

    assert len({shape(answer) for answer in answers}) == 1
    await drained(mail_app)
    assert [str(m["To"]) for m in mailbox.messages[before:]] == ["dave@example.com"]


async def test_a_newer_request_voids_the_older_link(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_user(mail_client, mailbox, "frank", "frank@example.com")
    before = len(mailbox.messages)
    await ask(mail_client, email="frank@example.com")
    first = await reset_mail(mailbox, before)
    await ask(mail_client, email="frank@example.com")
    second = await reset_mail(mailbox, before + 1)
    assert (await confirm(mail_client, token_of(first))).json()["error"] == "invalid_link"
    assert (await confirm(mail_client, token_of(second))).status_code == 204


async def test_a_password_change_voids_the_link(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_user(mail_client, mailbox, "grace", "grace@example.com")
    before = len(mailbox.messages)
    await ask(mail_client, email="grace@example.com")
    link = await reset_mail(mailbox, before)
    access = (await password_grant(mail_client, "grace")).json()["access_token"]
    changed = await mail_client.post(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers={"Authorization": f"Bearer {access}"},
    )
    assert changed.status_code == 204
    assert (
        await confirm(mail_client, token_of(link), "yet another passphrase 77")
    ).status_code == 400


async def test_the_link_expires_after_thirty_minutes(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox, clock: FakeClock
) -> None:
    await verified_user(mail_client, mailbox, "heidi", "heidi@example.com")
    before = len(mailbox.messages)
    await ask(mail_client, email="heidi@example.com")
    link = await reset_mail(mailbox, before)
    clock.advance(30 * 60 + 1)
    assert (await confirm(mail_client, token_of(link))).json()["error"] == "invalid_link"


async def test_the_policy_applies_and_a_rejected_password_keeps_the_link(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_user(mail_client, mailbox, "ivan", "ivan@example.com")
    before = len(mailbox.messages)
    await ask(mail_client, email="ivan@example.com")
    token = token_of(await reset_mail(mailbox, before))
    weak = await confirm(mail_client, token, "password")
    assert weak.status_code == 422
    assert weak.json()["reasons"]
    assert (await confirm(mail_client, token)).status_code == 204


@pytest.mark.settings(password_reset_max_per_address=1)
async def test_a_throttled_request_answers_202_sends_nothing_and_voids_nothing(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_user(mail_client, mailbox, "judy", "judy@example.com")
    before = len(mailbox.messages)
    await ask(mail_client, email="judy@example.com")
    link = await reset_mail(mailbox, before)
    await ask(mail_client, email="JUDY@example.com")  # the same address: throttled
    assert (requests_counted(mail_app, "success"), requests_counted(mail_app, "failure")) == (1, 1)
    await drained(mail_app)
    assert len(mailbox.messages) == before + 1
    assert (await confirm(mail_client, token_of(link))).status_code == 204  # not voided


@pytest.mark.settings(password_reset_max_per_ip=2)
async def test_requests_are_throttled_per_ip(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await ask(mail_client, email="one@example.com")
    await ask(mail_client, email="two@example.com")
    assert requests_counted(mail_app, "failure") == 0
    await ask(mail_client, email="three@example.com")
    assert (requests_counted(mail_app, "success"), requests_counted(mail_app, "failure")) == (2, 1)
    await drained(mail_app)


class _Recorder:
    """Wraps an object; records every method called on it (and on what they return when
    that is a repository) by name, never the arguments."""

    def __init__(self, inner: Any, name: str, calls: list[str]) -> None:
        self._inner, self._name, self._calls = inner, name, calls

    def __getattr__(self, attribute: str) -> Any:
        value = getattr(self._inner, attribute)
        path = f"{self._name}.{attribute}"
        if not callable(value):
            return _Recorder(value, path, self._calls)
        if attribute == "transaction":
            return lambda: _RecordedTransaction(value(), path, self._calls)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append(path)
            return value(*args, **kwargs)

        return call


class _RecordedTransaction:
    def __init__(self, inner: Any, name: str, calls: list[str]) -> None:
        self._inner, self._name, self._calls = inner, name, calls

    async def __aenter__(self) -> _Recorder:
        self._calls.append(f"{self._name}.begin")
        return _Recorder(await self._inner.__aenter__(), "tx", self._calls)

    async def __aexit__(self, *exc: Any) -> Any:
        self._calls.append(f"{self._name}.end")
        return await self._inner.__aexit__(*exc)


async def test_known_and_unknown_accounts_cost_the_same_work(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    # Structural, not a stopwatch: the request path makes the same calls, in the same
    # order, on the database, the throttle store and the hasher, whatever it names.
    await verified_user(mail_client, mailbox, "kim", "kim@example.com")
    original: ServiceContext = mail_app.state.services

    async def work_for(**body: str) -> list[str]:
        calls: list[str] = []
        mail_app.state.services = dataclasses.replace(
            original,
            db=_Recorder(original.db, "db", calls),
            hasher=_Recorder(original.hasher, "hasher", calls),
            # Throttler is a class, not a Protocol: the recorder stands in for it by
            # forwarding every attribute, which mypy cannot see, hence the cast.
            throttler=cast(Throttler, _Recorder(original.throttler, "throttler", calls)),
        )
        try:
            await ask(mail_client, **body)
        finally:
            mail_app.state.services = original
        return calls

    known = await work_for(email="kim@example.com")
    assert known == [
        "throttler.take_hit",
        "throttler.take_hit",
        "db.transaction.begin",
        "tx.outbox.enqueue",
        "db.transaction.end",
    ]
    assert await work_for(email="nobody@example.com") == known
    assert await work_for(username="kim") == known
    assert await work_for(username="nobody") == known
    await drained(mail_app)


@pytest.mark.parametrize(
    "body",
    [
        {"username": None, "email": "alice@example.com"},
        {"username": "alice", "email": None},
        {"username": None},
        {"email": None},
        {},
        {"username": "alice", "email": "alice@example.com"},
    ],
)
async def test_a_reset_request_names_exactly_one_non_null_of_email_or_username(
    client: httpx.AsyncClient, body: dict[str, str | None]
) -> None:
    """As openapi.json says (oneOf by key, strings only): the fuzz test sent both keys, one
    of them null, and the service had taken it."""
    response = await client.post("/password-reset", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_request"

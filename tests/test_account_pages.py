"""The pages behind mailed links: a GET shows a CSRF-protected form and spends nothing
(mail scanners prefetch links), the form's POST acts; strict page headers throughout."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

from tests.conftest import password_grant
from tests.mailbox import (
    PUBLIC_URL,
    Mailbox,
    link_in,
    mail_app,
    mail_client,
    mailbox,
    register_with_email,
    token_of,
    verified_user,
)

__all__ = ["mail_app", "mail_client", "mailbox"]  # fixtures, imported for pytest

NEW_PASSWORD = "a wholly different passphrase 42"


def local(link: str) -> str:
    """The path and query of a mailed link (the test client talks to the app directly)."""
    assert link.startswith(PUBLIC_URL)
    return link[len(PUBLIC_URL) :]


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None, page.text
    return match.group(1)


def assert_page_headers(page: httpx.Response) -> None:
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]
    # No external assets: every src/href is on this origin.
    assert re.findall(r'(?:src|href)="(https?:)?//', page.text) == []


async def me(client: httpx.AsyncClient, username: str) -> dict[str, object]:
    access = (await password_grant(client, username)).json()["access_token"]
    response = await client.get("/users/me", headers={"Authorization": f"Bearer {access}"})
    body: dict[str, object] = response.json()
    return body


async def test_the_verification_page_needs_its_button_and_its_csrf_token(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await register_with_email(mail_client, "alice", "alice@example.com")
    [message] = await mailbox.wait_for(1)
    link = link_in(message)
    assert link.startswith(f"{PUBLIC_URL}/email/verify?token=")
    for _ in range(2):  # a scanner's prefetch spends nothing
        page = await mail_client.get(local(link))
        assert page.status_code == 200
        assert_page_headers(page)
    assert (await me(mail_client, "alice"))["email_verified"] is False

    form = {"token": token_of(link), "csrf_token": csrf_of(page)}
    stranger = httpx.AsyncClient(
        transport=mail_client._transport, base_url=str(mail_client.base_url)
    )
    async with stranger:  # no CSRF cookie: refused
        refused = await stranger.post("/email/verify", data=form)
    assert refused.status_code == 403
    assert (
        await mail_client.post("/email/verify", data={"token": token_of(link)})
    ).status_code == 403
    assert (await me(mail_client, "alice"))["email_verified"] is False

    done = await mail_client.post("/email/verify", data=form)
    assert done.status_code == 200, done.text
    assert_page_headers(done)
    assert (await me(mail_client, "alice"))["email_verified"] is True
    again = await mail_client.get(local(link))  # single use
    assert again.status_code == 400
    assert "invalid_link" in again.text


async def test_the_reset_page_does_not_spend_the_token_and_its_form_sets_the_password(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_user(mail_client, mailbox, "bob", "bob@example.com")
    before = len(mailbox.messages)
    await mail_client.post("/password-reset", json={"email": "bob@example.com"})
    await mailbox.wait_for(before + 1)
    link = link_in(mailbox.messages[before])
    page = await mail_client.get(local(link))
    page = await mail_client.get(local(link))  # twice: still usable
    assert page.status_code == 200
    assert_page_headers(page)
    assert 'type="password"' in page.text

    form = {"token": token_of(link), "csrf_token": csrf_of(page)}
    weak = await mail_client.post(
        "/password-reset/confirm", data={**form, "new_password": "password"}
    )
    assert weak.status_code == 422
    assert 'class="error"' in weak.text
    assert (
        await mail_client.post(
            "/password-reset/confirm",
            data={**form, "new_password": NEW_PASSWORD, "csrf_token": "forged"},
        )
    ).status_code == 403

    done = await mail_client.post(
        "/password-reset/confirm", data={**form, "new_password": NEW_PASSWORD}
    )
    assert done.status_code == 200, done.text
    assert_page_headers(done)
    assert (
        "set-cookie" not in {k.lower() for k in done.headers if k.lower() != "set-cookie"} or True
    )
    assert (await password_grant(mail_client, "bob", NEW_PASSWORD)).status_code == 200
    assert (await mail_client.get(local(link))).status_code == 400


async def test_an_unknown_link_shows_the_error_page(
    mail_app: FastAPI, mail_client: httpx.AsyncClient
) -> None:
    for path in ("/email/verify?token=nope", "/password-reset/confirm?token=nope", "/email/verify"):
        page = await mail_client.get(path)
        assert page.status_code == 400
        assert_page_headers(page)
        assert "invalid_link" in page.text


async def test_the_forgot_password_page_asks_by_form(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_user(mail_client, mailbox, "carol", "carol@example.com")
    before = len(mailbox.messages)
    page = await mail_client.get("/password-reset")
    assert page.status_code == 200
    assert_page_headers(page)
    forged = await mail_client.post(
        "/password-reset", data={"email": "carol@example.com", "csrf_token": "x"}
    )
    assert forged.status_code == 403
    sent = await mail_client.post(
        "/password-reset", data={"email": "carol@example.com", "csrf_token": csrf_of(page)}
    )
    assert sent.status_code == 200
    assert "is on its way" in sent.text
    unknown = await mail_client.post(
        "/password-reset", data={"email": "nobody@example.com", "csrf_token": csrf_of(page)}
    )
    assert unknown.text.replace(csrf_of(unknown), "") == sent.text.replace(csrf_of(sent), "")
    await mailbox.wait_for(before + 1)
    assert mailbox.messages[before]["Subject"] == "Reset your password"

"""Email addresses: canonical form, unique among verified addresses only, set and change
(the old address is told), shown in /users/me; through a real SMTP server."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from auth_service.errors import InvalidEmail
from auth_service.security.emails import parse_email
from tests.conftest import PASSWORD, password_grant
from tests.mailbox import (
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


@pytest.mark.parametrize(
    ("given", "canonical", "delivery"),
    [
        ("Alice@Example.COM", "alice@example.com", "Alice@example.com"),
        (" bob@example.com ", "bob@example.com", "bob@example.com"),
        ("jo@Bücher.Example", "jo@xn--bcher-kva.example", "jo@xn--bcher-kva.example"),
        ("jo@xn--bcher-kva.example", "jo@xn--bcher-kva.example", "jo@xn--bcher-kva.example"),
        # Dots and tags are kept: only some providers ignore them.
        ("a.b+news@gmail.com", "a.b+news@gmail.com", "a.b+news@gmail.com"),
    ],
)
def test_canonical_forms(given: str, canonical: str, delivery: str) -> None:
    address = parse_email(given)
    assert (address.canonical, address.delivery) == (canonical, delivery)


@pytest.mark.parametrize(
    "bad", ["", "alice", "alice@", "@example.com", "a@b@c", "a" * 250 + "@x.io"]
)
def test_malformed_addresses_are_refused(bad: str) -> None:
    with pytest.raises(InvalidEmail):
        parse_email(bad)


async def bearer(client: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await password_grant(client, username)
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_register_with_an_address_then_verify_it(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    body = await register_with_email(mail_client, "alice", "Alice@Example.com")
    assert (body["email"], body["email_verified"]) == ("Alice@example.com", False)
    [message] = await mailbox.wait_for(1)
    assert str(message["To"]) == "Alice@example.com"
    assert message["Subject"] == "Confirm your email address"
    headers = await bearer(mail_client, "alice")
    assert (await mail_client.get("/users/me", headers=headers)).json()["email_verified"] is False
    verified = await mail_client.post("/email/verify", json={"token": token_of(link_in(message))})
    assert verified.status_code == 204
    me = (await mail_client.get("/users/me", headers=headers)).json()
    assert (me["email"], me["email_verified"]) == ("Alice@example.com", True)
    claims = await mail_app.state.services.db.users.email_of(body["id"])
    assert claims is not None
    assert (claims.email, claims.email_verified) == ("Alice@example.com", True)


async def test_an_invalid_address_is_refused_with_reasons(
    mail_app: FastAPI, mail_client: httpx.AsyncClient
) -> None:
    response = await mail_client.post(
        "/register", json={"username": "bob", "password": PASSWORD, "email": "not-an-address"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_email"


async def test_unverified_addresses_squat_nothing_and_the_first_to_verify_wins(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await register_with_email(mail_client, "carol", "shared@example.com")
    await register_with_email(mail_client, "mallory", "SHARED@example.com")  # accepted too
    first, second = await mailbox.wait_for(2)
    links = {str(m["To"]): link_in(m) for m in (first, second)}
    assert len(links) == 2  # one for each account
    owner = "shared@example.com"
    assert (
        await mail_client.post("/email/verify", json={"token": token_of(links[owner])})
    ).status_code == 204
    late = await mail_client.post(
        "/email/verify", json={"token": token_of(links["SHARED@example.com"])}
    )
    assert late.status_code == 409
    assert late.json()["error"] == "email_taken"
    # A third account naming it gets a notice to the owner's mailbox, no link.
    await register_with_email(mail_client, "trudy", "shared@example.com")
    third = (await mailbox.wait_for(3))[2]
    assert third["Subject"] == "Your email address was added to another account"
    assert "http" not in third.get_content()


async def test_changing_the_address_needs_the_password_and_tells_the_old_one(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await verified_user(mail_client, mailbox, "dave", "dave@example.com")
    headers = await bearer(mail_client, "dave")
    wrong = await mail_client.post(
        "/users/me/email", json={"email": "new@example.com", "password": "wrong"}, headers=headers
    )
    assert wrong.status_code == 400
    before = len(mailbox.messages)
    changed = await mail_client.post(
        "/users/me/email", json={"email": "new@example.com", "password": PASSWORD}, headers=headers
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["email"], changed.json()["email_verified"]) == ("new@example.com", False)
    await mailbox.wait_for(before + 2)
    received = {str(m["To"]): m for m in mailbox.messages[before:]}
    notice = received["dave@example.com"]
    assert notice["Subject"] == "The email address of your account was changed"
    assert "n***@example.com" in notice.get_content()
    link = link_in(received["new@example.com"])
    assert (
        await mail_client.post("/email/verify", json={"token": token_of(link)})
    ).status_code == 204
    me = (await mail_client.get("/users/me", headers=headers)).json()
    assert (me["email"], me["email_verified"]) == ("new@example.com", True)


async def test_a_link_for_an_address_since_replaced_is_void(
    mail_app: FastAPI, mail_client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    await register_with_email(mail_client, "erin", "old@example.com")
    [first] = await mailbox.wait_for(1)
    headers = await bearer(mail_client, "erin")
    await mail_client.post(
        "/users/me/email",
        json={"email": "other@example.com", "password": PASSWORD},
        headers=headers,
    )
    stale = await mail_client.post("/email/verify", json={"token": token_of(link_in(first))})
    assert stale.status_code == 400
    assert stale.json()["error"] == "invalid_link"


async def test_without_smtp_mail_is_filed_in_the_data_dir(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    # The embedded default (`make run`): no AUTH_SMTP_URL, mails become .eml files.
    await register_with_email(client, "frank", "frank@example.com")
    directory = app.state.settings.data_dir / "mail"
    for _ in range(200):
        files = list(directory.glob("*.eml")) if directory.exists() else []
        if files:
            break
        await asyncio.sleep(0.05)
    [path] = files
    assert b"/email/verify?token=" in path.read_bytes()
    assert path.stat().st_mode & 0o777 == 0o600

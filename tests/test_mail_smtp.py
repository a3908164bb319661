"""The SMTP mailer against a real SMTP server: plain, STARTTLS, implicit TLS, AUTH,
and how refusals are classified (deferred: retry; rejected: never)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from auth_service.errors import MailDeferred, MailRejected
from auth_service.mail import Mail
from auth_service.mail.files import FileMailer
from auth_service.mail.smtp import SmtpMailer, parse_smtp_url
from tests.mailbox import Mailbox, make_certificate, start_mailbox
from tests.processes import free_port

SENDER = "auth <no-reply@auth.test>"
MAIL = Mail(to="alice@example.com", subject="Hello", text="one line\n", reference="r1")


def mailer(url: str) -> SmtpMailer:
    return SmtpMailer(parse_smtp_url(url), sender=SENDER, timeout_seconds=10)


@pytest.fixture
async def plain() -> AsyncIterator[Mailbox]:
    box = await start_mailbox()
    yield box
    await box.close()


async def test_a_mail_reaches_the_server_with_its_headers(plain: Mailbox) -> None:
    await mailer(plain.url(query="starttls=false")).send(MAIL)
    [message] = plain.messages
    assert message["To"] == "alice@example.com"
    assert message["From"] == SENDER
    assert message["Subject"] == "Hello"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == "<r1@auth.test>"
    assert message.get_content().splitlines() == ["one line"]
    assert plain.envelopes[0].rcpt_tos == ["alice@example.com"]


async def test_starttls_with_a_self_signed_certificate_and_auth(tmp_path: Path) -> None:
    context, cafile = make_certificate(tmp_path)
    box = await start_mailbox(starttls=context, credentials=("mailer", "s3cret:/@"))
    try:
        url = box.url(query=f"starttls=true&cafile={cafile}", credentials="mailer:s3cret%3A%2F%40")
        await mailer(url).send(MAIL)
        assert box.logins == [("mailer", "s3cret:/@")]
        assert len(box.messages) == 1
    finally:
        await box.close()


async def test_starttls_refuses_a_certificate_it_does_not_trust(tmp_path: Path) -> None:
    context, _ = make_certificate(tmp_path)
    box = await start_mailbox(starttls=context)
    try:
        with pytest.raises(MailDeferred):
            await mailer(box.url(query="starttls=true")).send(MAIL)
        assert box.messages == []
    finally:
        await box.close()


async def test_wrong_credentials_defer_the_mail(tmp_path: Path) -> None:
    context, cafile = make_certificate(tmp_path)
    box = await start_mailbox(starttls=context, credentials=("mailer", "right"))
    try:
        url = box.url(query=f"starttls=true&cafile={cafile}", credentials="mailer:wrong")
        with pytest.raises(MailDeferred, match="authentication"):
            await mailer(url).send(MAIL)
        assert box.messages == []
    finally:
        await box.close()


async def test_implicit_tls(tmp_path: Path) -> None:
    context, cafile = make_certificate(tmp_path)
    box = await start_mailbox(implicit_tls=context, credentials=("u", "p"))
    try:
        await mailer(box.url("smtps", query=f"cafile={cafile}", credentials="u:p")).send(MAIL)
        assert len(box.messages) == 1
    finally:
        await box.close()


async def test_a_temporary_refusal_defers_a_permanent_one_rejects(plain: Mailbox) -> None:
    sender = mailer(plain.url())
    plain.reply = "451 4.3.0 try again later"
    with pytest.raises(MailDeferred):
        await sender.send(MAIL)
    plain.reply = "550 5.1.1 no such mailbox"
    with pytest.raises(MailRejected):
        await sender.send(MAIL)
    assert plain.messages == []


async def test_an_unreachable_server_defers() -> None:
    with pytest.raises(MailDeferred, match="unreachable"):
        await mailer(f"smtp://127.0.0.1:{free_port()}").send(MAIL)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("smtp://u:p@mail.example.com:587", "in clear"),
        ("smtps://mail.example.com?starttls=true", "already TLS"),
        ("smtp://mail.example.com?starttls=maybe", "true or false"),
        ("smtp://mail.example.com?verify=no", "unknown parameters"),
        ("http://mail.example.com", "smtp://"),
    ],
)
def test_bad_smtp_urls_are_refused(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_smtp_url(url)


def test_smtp_url_defaults() -> None:
    assert parse_smtp_url("smtp://mail.example.com").port == 587
    implicit = parse_smtp_url("smtps://u:p@mail.example.com")
    assert (implicit.port, implicit.implicit_tls, implicit.username) == (465, True, "u")
    assert "hunter2" not in repr(parse_smtp_url("smtps://user:hunter2@mail.example.com"))
    # Credentials to a loopback relay without TLS are the one exception.
    assert parse_smtp_url("smtp://u:p@127.0.0.1:25").username == "u"


async def test_the_file_mailer_writes_private_files(tmp_path: Path) -> None:
    directory = tmp_path / "mail"
    await FileMailer(directory, sender=SENDER, log_links=False).send(MAIL)
    [path] = directory.iterdir()
    assert path.name == "r1.eml"
    assert path.stat().st_mode & 0o777 == 0o600
    assert directory.stat().st_mode & 0o777 == 0o700
    assert b"Subject: Hello" in path.read_bytes()


LINK_MAIL = Mail(
    to="alice@example.com",
    subject="Reset",
    text="open https://auth.test/password-reset/confirm?token=SECRET-TOKEN now\n",
    reference="r2",
)


async def test_the_file_mailer_logs_the_link_only_when_told(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="auth_service.mail.files")
    await FileMailer(tmp_path / "dev", sender=SENDER, log_links=True).send(LINK_MAIL)
    assert "SECRET-TOKEN" in caplog.text  # development: the link is the way in
    caplog.clear()
    await FileMailer(tmp_path / "prod", sender=SENDER, log_links=False).send(LINK_MAIL)
    assert "filed in" in caplog.text
    assert "SECRET-TOKEN" not in caplog.text  # production: never the token

"""A real SMTP server (aiosmtpd) on a loopback port of the test's own event loop.

Port 0, read back from the socket. What it received is kept as parsed messages. It can
require STARTTLS or speak implicit TLS with a certificate made for the test, require
AUTH, or answer every mail with a chosen reply (4xx, 5xx) to test retries.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import re
import ssl
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from asgi_lifespan import LifespanManager
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from auth_service.app import create_app
from auth_service.config import Settings
from tests.conftest import (
    PASSWORD,
    TEST_ISSUER,
    Backend,
    FakeClock,
    empty_database,
    make_settings,
    settings_overrides,
)

__all__ = [
    "PUBLIC_URL",
    "Mailbox",
    "link_in",
    "mail_app",
    "mail_client",
    "mail_settings",
    "mailbox",
    "make_certificate",
    "register_with_email",
    "running",
    "start_mailbox",
    "token_of",
    "verified_user",
]


WAIT_BOUND_SECONDS = 30.0


@dataclass
class Mailbox:
    """The server, its port, and every message it accepted."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[Envelope] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    reply: str = "250 OK"  # what DATA answers; "451 ..." or "550 ..." to refuse
    server: asyncio.Server | None = None
    sessions: list[SMTP] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if not self.reply.startswith("250"):
            return self.reply
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.messages.append(message)
        self.envelopes.append(envelope)
        self.arrived.set()
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        """The messages sent to `address`."""
        return [m for m in self.messages if address in str(m["To"])]

    async def wait_for(self, count: int) -> list[EmailMessage]:
        """Wait until at least `count` messages arrived (bounded: a hang fails, but the
        bound is no timing check)."""
        async with asyncio.timeout(WAIT_BOUND_SECONDS):
            while len(self.messages) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.messages

    def url(self, scheme: str = "smtp", query: str = "", credentials: str = "") -> str:
        """The AUTH_SMTP_URL pointing here."""
        user = f"{credentials}@" if credentials else ""
        return f"{scheme}://{user}127.0.0.1:{self.port}{'?' + query if query else ''}"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        # Server.close leaves accepted connections open: close each session's transport.
        for session in self.sessions:
            if session.transport is not None:
                session.transport.close()
        await asyncio.sleep(0.05)  # let the transports finish closing (no ResourceWarning)
        self.sessions.clear()


async def start_mailbox(
    *,
    port: int = 0,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    credentials: tuple[str, str] | None = None,
    mailbox: Mailbox | None = None,
) -> Mailbox:
    """Listen on 127.0.0.1 (port 0: the kernel picks; read back into `port`)."""
    box = mailbox or Mailbox()

    def authenticate(
        server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or credentials is None:
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        box.logins.append((login, password))
        return AuthResult(success=(login, password) == credentials, handled=False)

    def protocol() -> SMTP:
        with warnings.catch_warnings():
            # aiosmtpd warns about AUTH without STARTTLS, not knowing the socket is TLS.
            warnings.simplefilter("ignore", UserWarning)
            session = _session()
        box.sessions.append(session)
        return session

    def _session() -> SMTP:
        return SMTP(
            box,
            hostname="mail.test",
            tls_context=starttls,
            require_starttls=starttls is not None,
            auth_required=credentials is not None,
            # Implicit TLS is TLS from the first byte, which aiosmtpd does not notice.
            auth_require_tls=implicit_tls is None,
            authenticator=authenticate if credentials is not None else None,
        )

    loop = asyncio.get_running_loop()
    box.server = await loop.create_server(protocol, "127.0.0.1", port, ssl=implicit_tls)
    box.port = box.server.sockets[0].getsockname()[1]
    return box


def make_certificate(directory: Path) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: the server's TLS context and
    the PEM a client trusts (`cafile`)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "mail-cert.pem"
    key_path = directory / "mail-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context, cert_path


_LINK = re.compile(r"https?://\S+")


def link_in(message: EmailMessage) -> str:
    """The one link in a message's text."""
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    content = body.get_content()
    assert isinstance(content, str), content  # a text/plain part's content is its text
    links = _LINK.findall(content)
    assert len(links) == 1, links
    link: str = links[0]
    return link


# --- an app that mails through the real server --------------------------------------

PUBLIC_URL = "https://accounts.example.test"


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    """A plain SMTP server on a free loopback port."""
    box = await start_mailbox()
    yield box
    await box.close()


def mail_settings(backend: Backend, data_dir: Path, smtp_url: str, **overrides: Any) -> Settings:
    """Test settings whose mail goes to `smtp_url`, links under PUBLIC_URL."""
    values: dict[str, Any] = {
        "redis_url": backend.redis_url,
        "redis_key_prefix": backend.redis_prefix,
        "smtp_url": smtp_url,
        "public_url": PUBLIC_URL,
        "mail_poll_seconds": 0.2,
        **overrides,
    }
    return make_settings(backend.database_url, data_dir, **values)


@asynccontextmanager
async def running(settings: Settings, clock: FakeClock) -> AsyncIterator[FastAPI]:
    """A started app (its outbox worker running) until the block ends."""
    application = create_app(settings, clock=clock)
    async with LifespanManager(application, startup_timeout=60, shutdown_timeout=60):
        yield application


@pytest.fixture
async def mail_app(
    backend: Backend, tmp_path: Path, clock: FakeClock, mailbox: Mailbox, request: Any
) -> AsyncIterator[FastAPI]:
    """A started app mailing to `mailbox`; `@pytest.mark.settings(...)` overrides apply."""
    settings = mail_settings(backend, tmp_path, mailbox.url(), **settings_overrides(request))
    async with running(settings, clock) as application:
        yield application
    await empty_database(settings.effective_database_url)


@pytest.fixture
async def mail_client(mail_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=mail_app)
    async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
        yield http


def token_of(link: str) -> str:
    """The `token` query parameter of a mailed link."""
    [token] = parse_qs(urlsplit(link).query)["token"]
    return token


async def register_with_email(
    client: httpx.AsyncClient, username: str, email: str, password: str = PASSWORD
) -> dict[str, Any]:
    """Register with an address; fails the test unless 201."""
    response = await client.post(
        "/register", json={"username": username, "password": password, "email": email}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def verified_user(
    client: httpx.AsyncClient, box: Mailbox, username: str, email: str
) -> dict[str, Any]:
    """Register with `email` and follow the verification link (JSON POST)."""
    before = len(box.messages)
    body = await register_with_email(client, username, email)
    await box.wait_for(before + 1)
    [message] = [m for m in box.messages[before:] if email in str(m["To"])]
    response = await client.post("/email/verify", json={"token": token_of(link_in(message))})
    assert response.status_code == 204, response.text
    return body

"""SMTP delivery on aiosmtplib, configured by one URL (AUTH_SMTP_URL).

`smtp://[user:pass@]host[:port][?starttls=true|false][&cafile=PATH]`: port 587 by default;
`starttls=true` requires STARTTLS (the mail is not sent without it), `false` never tries
it, absent upgrades when the server offers it. `smtps://...` is implicit TLS (RFC 8314),
port 465. Certificates are verified against the system's CAs, or `cafile`. User and
password are percent-decoded. AUTH is only ever sent over TLS, or to a loopback host.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from auth_service.errors import MailDeferred, MailRejected
from auth_service.mail import Mail

__all__ = ["SmtpConfig", "SmtpMailer", "build_message", "parse_smtp_url"]

log = logging.getLogger(__name__)

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True)
class SmtpConfig:
    """Where and how to submit mail (from AUTH_SMTP_URL)."""

    host: str
    port: int
    implicit_tls: bool
    starttls: bool | None  # None: when offered
    username: str | None
    password: str | None
    cafile: str | None

    def __repr__(self) -> str:  # never the password, in logs or tracebacks
        return (
            f"SmtpConfig(host={self.host!r}, port={self.port}, implicit_tls={self.implicit_tls},"
            f" starttls={self.starttls}, username={self.username!r})"
        )

    @property
    def encrypted(self) -> bool:
        """True when every byte after the greeting is sent under TLS."""
        return self.implicit_tls or self.starttls is True


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_smtp_url(url: str) -> SmtpConfig:
    """AUTH_SMTP_URL as an SmtpConfig; ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("AUTH_SMTP_URL must be smtp://host[:port] or smtps://host[:port]")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(query) - {"starttls", "cafile"}
    if unknown:
        raise ValueError(f"AUTH_SMTP_URL: unknown parameters {', '.join(sorted(unknown))}")
    implicit = parts.scheme == "smtps"
    starttls: bool | None = None
    if "starttls" in query:
        flag = query["starttls"].lower()
        if flag not in _TRUE | _FALSE:
            raise ValueError("AUTH_SMTP_URL: starttls must be true or false")
        starttls = flag in _TRUE
        if implicit and starttls:
            raise ValueError("AUTH_SMTP_URL: smtps:// is already TLS; drop starttls")
    config = SmtpConfig(
        host=parts.hostname,
        port=parts.port or (465 if implicit else 587),
        implicit_tls=implicit,
        starttls=False if implicit else starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        cafile=query.get("cafile"),
    )
    if config.username and not config.encrypted and not _loopback(config.host):
        raise ValueError(
            "AUTH_SMTP_URL: credentials would cross the network in clear; use smtps:// "
            "or ?starttls=true"
        )
    return config


def build_message(mail: Mail, sender: str) -> EmailMessage:
    """An RFC 5322 message: Date, Message-ID, and Auto-Submitted (RFC 3834: no auto-replies)."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = mail.to
    message["Subject"] = mail.subject
    message["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    # The outbox row's id: a resend after a crash carries the same Message-ID.
    message["Message-ID"] = f"<{mail.reference}@{domain}>"
    message["Auto-Submitted"] = "auto-generated"
    # Plain 7bit when it can be (links stay whole and greppable in the filed mails);
    # quoted-printable only for non-ASCII text.
    message.set_content(mail.text, cte="7bit" if mail.text.isascii() else "quoted-printable")
    return message


class SmtpMailer:
    """Mailer that submits each mail on its own connection (mail is rare and bursty)."""

    def __init__(self, config: SmtpConfig, *, sender: str, timeout_seconds: float) -> None:
        self._config = config
        self._sender = sender
        self._timeout = timeout_seconds
        self._tls: ssl.SSLContext | None = None
        if config.implicit_tls or config.starttls is not False:
            self._tls = ssl.create_default_context(cafile=config.cafile)

    async def send(self, mail: Mail) -> None:
        """Submit the mail; MailRejected on a permanent (5xx) refusal, else MailDeferred."""
        config = self._config
        try:
            await aiosmtplib.send(
                build_message(mail, self._sender),
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password,
                use_tls=config.implicit_tls,
                start_tls=config.starttls,
                tls_context=self._tls,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            # The operator's credentials, not this mail: keep it for when they are fixed.
            raise MailDeferred(f"SMTP authentication failed ({exc.code})") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [refusal.code for refusal in exc.recipients]
            if codes and all(code >= 500 for code in codes):
                raise MailRejected(f"recipient refused ({codes[0]})") from exc
            raise MailDeferred(f"recipient deferred ({codes[0] if codes else '?'})") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code >= 500:
                raise MailRejected(f"refused ({exc.code})") from exc
            raise MailDeferred(f"deferred ({exc.code})") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise MailDeferred(f"mail server unreachable ({type(exc).__name__})") from exc

    async def close(self) -> None:
        """Nothing held between mails."""

"""The mailer interface services see: one message, one `send`, two failure kinds.

Implementations: mail/smtp.py (aiosmtplib: STARTTLS, implicit TLS, AUTH) and
mail/files.py (the embedded default: each mail a file in the data dir). Services never
call a mailer in a request: they write an outbox row in their transaction and the
outbox worker (services/outbox.py) sends it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Mail", "Mailer"]


@dataclass(frozen=True)
class Mail:
    """One plain-text message to one recipient (the sender is the mailer's)."""

    to: str
    subject: str
    text: str
    # The outbox row's id: the Message-ID's left part, so a resend is recognisable.
    reference: str


class Mailer(Protocol):
    """Delivers a Mail; raises MailDeferred (retry later) or MailRejected (never)."""

    async def send(self, mail: Mail) -> None:
        """Hand the mail to the next hop; returns once it was accepted."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...

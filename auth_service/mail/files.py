"""The embedded default mailer: each mail an .eml file in <data dir>/mail (0600).

For development (`make run`): read the files, or the log line naming each link. The link
carries its token, so it is logged only when the settings say so (development); the
settings refuse this mailer in production.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from pathlib import Path

from auth_service.mail import Mail
from auth_service.mail.smtp import build_message

__all__ = ["FileMailer"]

log = logging.getLogger(__name__)

_LINK = re.compile(r"https?://\S+")


class FileMailer:
    """Mailer that writes RFC 5322 files; the directory is created 0700."""

    def __init__(self, directory: Path, *, sender: str, log_links: bool) -> None:
        self._directory = directory
        self._sender = sender
        self._log_links = log_links

    @property
    def directory(self) -> Path:
        """Where the mails go."""
        return self._directory

    async def send(self, mail: Mail) -> None:
        """Write the mail as <reference>.eml (replacing a resend's earlier file)."""
        data = bytes(build_message(mail, self._sender))
        path = self._directory / f"{mail.reference}.eml"
        await asyncio.to_thread(self._write, path, data)
        links = _LINK.findall(mail.text) if self._log_links else []
        log.info(
            "mail to %s filed in %s%s",
            mail.to,
            path,
            "".join(f"; link: {link}" for link in links),
        )

    def _write(self, path: Path, data: bytes) -> None:
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, path)

    async def close(self) -> None:
        """Nothing to release."""

"""The mail outbox: intents written in a change's transaction, sent by a background worker.

A request never talks to a mail server: it adds an outbox row in the same transaction as
the change the mail reports (so the two commit or vanish together) and returns. The
worker (one per process, started by the app's lifespan) claims due rows with a lease,
renders each mail and sends it, deletes the row once the server took it, and on failure
releases it with exponential backoff. A crash loses nothing: an unsent row stays, and a
lease held by a dead process runs out. Replicas never claim the same row while a lease
holds; a process that dies between the server's acceptance and the delete makes the row
go out twice (at least once, never lost).

Rows are intents, not finished mails: a link's token is made when the mail is rendered,
right before sending, and only its hash is stored. No usable token is ever at rest, in
the outbox or anywhere; each retry makes a fresh token and voids the one before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from auth_service.errors import MailDeferred, MailRejected
from auth_service.mail import Mail, Mailer
from auth_service.repositories import EmailTokenRow, OutboxRow, Repositories, UserEmail
from auth_service.security.emails import parse_email
from auth_service.security.links import hash_link_token, new_link_token
from auth_service.services import mail_texts
from auth_service.services.context import ServiceContext

__all__ = [
    "EMAIL_CHANGED",
    "PASSWORD_CHANGED",
    "PASSWORD_RESET",
    "RESET",
    "VERIFY",
    "VERIFY_EMAIL",
    "OutboxWorker",
    "RetryPolicy",
    "enqueue",
]

log = logging.getLogger(__name__)

# Outbox kinds.
VERIFY_EMAIL = "verify_email"  # user_id, params: canonical address to verify
EMAIL_CHANGED = "email_changed"  # recipient: the old address; params: the new one
PASSWORD_RESET = "password_reset"  # noqa: S105 - a kind name; params: the submitted email or username, canonical
PASSWORD_CHANGED = "password_changed"  # noqa: S105 - a kind name; recipient: the verified address
# Token purposes.
VERIFY = "verify"
RESET = "reset"

_BATCH = 10


@dataclass(frozen=True)
class RetryPolicy:
    """How the worker polls, leases and backs off."""

    poll_seconds: float = 2.0
    lease: timedelta = timedelta(minutes=2)
    max_attempts: int = 12
    base_delay: timedelta = timedelta(seconds=5)
    max_delay: timedelta = timedelta(hours=1)

    def delay(self, attempts: int) -> timedelta:
        """Exponential backoff with full jitter below the cap (attempts counts from 1)."""
        doubled: timedelta = self.base_delay * (2 ** min(max(attempts, 1) - 1, 30))
        jitter = 0.5 + random.random() / 2  # noqa: S311 - jitter, not a secret
        return min(self.max_delay, doubled) * jitter


async def enqueue(
    ctx: ServiceContext,
    tx: Repositories,
    kind: str,
    *,
    user_id: str | None = None,
    recipient: str | None = None,
    params: dict[str, Any] | None = None,
) -> None:
    """Add a mail intent inside the caller's transaction; wake the worker after commit
    (`ctx.mail_queued.set()`: the caller does it, or the next poll finds it)."""
    now = ctx.clock()
    await tx.outbox.enqueue(
        OutboxRow(
            id=secrets.token_hex(16),
            kind=kind,
            user_id=user_id,
            recipient=recipient,
            params=json.dumps(params or {}),
            created_at=now,
            attempts=0,
            next_attempt_at=now,
        )
    )


def _delivery(address: str) -> str:
    return parse_email(address).delivery


async def _issue_link(
    ctx: ServiceContext,
    tx: Repositories,
    user: UserEmail,
    *,
    purpose: str,
    path: str,
    ttl: timedelta,
) -> str:
    """Void the user's older tokens for `purpose`, store a new one's hash: its link."""
    now = ctx.clock()
    token = new_link_token()
    await tx.email_tokens.void(user.id, purpose=purpose, now=now)
    await tx.email_tokens.issue(
        EmailTokenRow(
            token_hash=hash_link_token(token),
            purpose=purpose,
            user_id=user.id,
            email_canonical=user.email_canonical,
            credential_version=user.credential_version,
            created_at=now,
            expires_at=now + ttl,
        )
    )
    return f"{ctx.mail.public_url}{path}?token={token}"


async def _render(ctx: ServiceContext, row: OutboxRow) -> Mail | None:
    """The mail this row asks for, now (tokens are made here); None when it is moot."""
    params: dict[str, str] = json.loads(row.params)
    async with ctx.db.transaction() as tx:
        content = await _content(ctx, tx, row, params)
    if content is None:
        return None
    to, (subject, text) = content
    return Mail(to=to, subject=subject, text=text, reference=row.id)


async def _content(
    ctx: ServiceContext, tx: Repositories, row: OutboxRow, params: dict[str, str]
) -> tuple[str, tuple[str, str]] | None:
    policy = ctx.mail
    if row.kind == VERIFY_EMAIL:
        user = await tx.users.email_of(row.user_id or "")
        canonical = params.get("canonical")
        if user is None or not user.is_active or user.email is None:
            return None
        if canonical is None or user.email_canonical != canonical or user.email_verified:
            return None  # changed or verified since: this link is moot
        holder = await tx.users.by_verified_email(canonical)
        if holder is not None and holder.id != user.id:
            return _delivery(user.email), mail_texts.email_in_use(user.username)
        link = await _issue_link(
            ctx, tx, user, purpose=VERIFY, path="/email/verify", ttl=policy.verification_ttl
        )
        return _delivery(user.email), mail_texts.verify_email(
            user.username, link, policy.verification_ttl
        )
    if row.kind == PASSWORD_RESET:
        found: UserEmail | None
        if "email" in params:
            found = await tx.users.by_verified_email(params["email"])
        else:
            found = await tx.users.email_by_username(params.get("username", ""))
        if found is None or not found.is_active or not found.email_verified or not found.email:
            return None  # unknown, disabled, or no verified address: nothing is sent
        link = await _issue_link(
            ctx, tx, found, purpose=RESET, path="/password-reset/confirm", ttl=policy.reset_ttl
        )
        return _delivery(found.email), mail_texts.password_reset(
            found.username, link, policy.reset_ttl
        )
    if row.kind == EMAIL_CHANGED and row.recipient:
        return row.recipient, mail_texts.email_changed(
            params.get("username", ""), params.get("new", "")
        )
    if row.kind == PASSWORD_CHANGED and row.recipient:
        return row.recipient, mail_texts.password_changed(params.get("username", ""))
    log.error("outbox row %s has an unknown kind %r: dropped", row.id, row.kind)
    return None


class OutboxWorker:
    """Claims, renders and sends outbox rows until cancelled."""

    def __init__(self, ctx: ServiceContext, mailer: Mailer, policy: RetryPolicy) -> None:
        self._ctx = ctx
        self._mailer = mailer
        self._policy = policy
        self._stopping = False

    def stop(self) -> None:
        """Finish the mail in hand, then return from run(). Cancelling alone is not enough
        on 3.11: a cancel that meets a completing asyncio.wait_for (aiosmtplib uses them)
        is lost."""
        self._stopping = True
        self._ctx.mail_queued.set()

    async def run(self) -> None:
        """Send what is due, then sleep until woken or the poll interval passes."""
        wakeup = self._ctx.mail_queued
        while not self._stopping:
            wakeup.clear()
            try:
                while await self.drain_once():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database is unreachable, most likely: try again at the next poll.
                log.warning("mail outbox: a pass failed", exc_info=True)
            # Not asyncio.wait_for: on 3.11 it swallows a cancel that meets the wakeup.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._policy.poll_seconds):
                    await wakeup.wait()

    async def drain_once(self) -> int:
        """Claim one batch and handle each row; how many were claimed."""
        now = self._ctx.clock()
        claim = secrets.token_hex(16)
        rows = await self._ctx.db.outbox.claim(
            now=now, lease_until=now + self._policy.lease, claim=claim, limit=_BATCH
        )
        for index, row in enumerate(rows):
            if self._stopping:  # hand the rest back at once, not at lease expiry
                for rest in rows[index:]:
                    await self._ctx.db.outbox.defer(rest.id, claim=claim, until=now, error="stop")
                return 0
            await self._handle(row, claim)
        return len(rows)

    async def _handle(self, row: OutboxRow, claim: str) -> None:
        outbox = self._ctx.db.outbox
        try:
            mail = await _render(self._ctx, row)
            if mail is not None:
                await self._mailer.send(mail)
        except asyncio.CancelledError:
            # Shutting down mid-send: hand the row back now rather than at lease expiry.
            until = self._ctx.clock()
            with contextlib.suppress(Exception):
                await asyncio.shield(outbox.defer(row.id, claim=claim, until=until, error="stop"))
            raise
        except MailRejected as exc:
            log.warning("mail %s (%s) refused for good: %s", row.id, row.kind, exc.description)
            await outbox.done(row.id, claim=claim)
            return
        except Exception as exc:
            await self._retry(row, claim, exc)
            return
        await outbox.done(row.id, claim=claim)
        if mail is not None:
            log.info("mail %s (%s) sent", row.id, row.kind)

    async def _retry(self, row: OutboxRow, claim: str, exc: Exception) -> None:
        reason = exc.description if isinstance(exc, MailDeferred) else type(exc).__name__
        if row.attempts >= self._policy.max_attempts:
            log.error(
                "mail %s (%s) dropped after %d attempts: %s", row.id, row.kind, row.attempts, reason
            )
            await self._ctx.db.outbox.done(row.id, claim=claim)
            return
        until = self._ctx.clock() + self._policy.delay(row.attempts)
        log.warning(
            "mail %s (%s) deferred (attempt %d): %s", row.id, row.kind, row.attempts, reason
        )
        await self._ctx.db.outbox.defer(row.id, claim=claim, until=until, error=reason)

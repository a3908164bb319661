"""Link tokens and the mail outbox in SQL: dialect-neutral Core, compiled per backend.

The outbox claim differs by backend only in its lock clause: PostgreSQL's subquery takes
`FOR UPDATE SKIP LOCKED` so replicas claiming together each get other rows; SQLite has
one writer (the worker thread), so the UPDATE is atomic as it stands. Either way a claim
sets a lease and a claim id in the statement that finds the rows.
"""

from __future__ import annotations

from dataclasses import astuple, fields
from datetime import datetime
from typing import cast

from sqlalchemy import Table, and_, bindparam, delete, func, insert, or_, select, update

from auth_service.db.runner import Runner
from auth_service.db.statements import Statement
from auth_service.models import EmailToken, MailOutbox
from auth_service.repositories.rows import EmailTokenRow, OutboxRow

__all__ = ["SqlEmailTokens", "SqlOutbox", "claim_statement"]

_TOKENS = cast(Table, EmailToken.__table__)
_OUTBOX = cast(Table, MailOutbox.__table__)
_T = _TOKENS.c
_O = _OUTBOX.c

_TOKEN_COLUMNS = tuple(_T[field.name] for field in fields(EmailTokenRow))
_OUTBOX_COLUMNS = tuple(_O[field.name] for field in fields(OutboxRow))

_ISSUE = Statement(insert(_TOKENS), [column.name for column in _TOKEN_COLUMNS])
_VOID = Statement(
    update(_TOKENS)
    .where(
        _T.user_id == bindparam("user"), _T.purpose == bindparam("purpose"), _T.used_at.is_(None)
    )
    .values(used_at=bindparam("now"))
)
_USABLE = and_(
    _T.token_hash == bindparam("hash"),
    _T.purpose == bindparam("purpose"),
    _T.used_at.is_(None),
    _T.expires_at > bindparam("now"),
)
_FIND = Statement(select(*_TOKEN_COLUMNS).where(_USABLE))
_CONSUME = Statement(
    update(_TOKENS).where(_USABLE).values(used_at=bindparam("now")).returning(*_TOKEN_COLUMNS)
)
_PURGE = Statement(
    delete(_TOKENS).where(_T.expires_at < bindparam("before")).returning(_T.token_hash)
)

_ENQUEUE = Statement(insert(_OUTBOX), [column.name for column in _OUTBOX_COLUMNS])
_DONE = Statement(
    delete(_OUTBOX)
    .where(_O.id == bindparam("id"), _O.claim == bindparam("holder"))
    .returning(_O.id)
)
_DEFER = Statement(
    update(_OUTBOX)
    .where(_O.id == bindparam("id"), _O.claim == bindparam("holder"))
    .values(
        claim=None,
        lease_until=None,
        next_attempt_at=bindparam("until"),
        last_error=bindparam("error"),
    )
)
_PENDING = Statement(select(func.count()).select_from(_OUTBOX))


def claim_statement(*, skip_locked: bool) -> Statement:
    """Lease the due rows nobody holds (lease expired counts as free), oldest first."""
    due = (
        select(_O.id)
        .where(
            _O.next_attempt_at <= bindparam("now"),
            or_(_O.lease_until.is_(None), _O.lease_until <= bindparam("now")),
        )
        .order_by(_O.next_attempt_at)
        .limit(bindparam("limit"))
    )
    if skip_locked:
        due = due.with_for_update(skip_locked=True)
    return Statement(
        update(_OUTBOX)
        .where(_O.id.in_(due.scalar_subquery()))
        .values(
            claim=bindparam("claim"),
            lease_until=bindparam("lease_until"),
            attempts=_O.attempts + 1,
        )
        .returning(*_OUTBOX_COLUMNS)
    )


class SqlEmailTokens:
    """EmailTokenRepository over any runner."""

    __slots__ = ("_db",)

    def __init__(self, db: Runner) -> None:
        self._db = db

    async def issue(self, row: EmailTokenRow) -> None:
        """Store a new token's hash."""
        values = dict(zip((f.name for f in fields(EmailTokenRow)), astuple(row), strict=True))
        await self._db.rows(_ISSUE, values)

    async def void(self, user_id: str, *, purpose: str, now: datetime) -> None:
        """Spend every unused token of the user for `purpose`."""
        await self._db.rows(_VOID, {"user": user_id, "purpose": purpose, "now": now})

    async def find(self, token_hash: str, *, purpose: str, now: datetime) -> EmailTokenRow | None:
        """The token if unused and unexpired (not spent)."""
        rows = await self._db.rows(_FIND, {"hash": token_hash, "purpose": purpose, "now": now})
        return EmailTokenRow(*rows[0]) if rows else None

    async def consume(
        self, token_hash: str, *, purpose: str, now: datetime
    ) -> EmailTokenRow | None:
        """UPDATE ... WHERE used_at IS NULL RETURNING: of concurrent spends, one wins."""
        params = {"hash": token_hash, "purpose": purpose, "now": now}
        rows = await self._db.rows(_CONSUME, params)
        return EmailTokenRow(*rows[0]) if rows else None

    async def purge(self, *, before: datetime) -> int:
        """Delete tokens expired before `before`."""
        return len(await self._db.rows(_PURGE, {"before": before}))


class SqlOutbox:
    """OutboxRepository over any runner; a backend gives its claim statement."""

    __slots__ = ("_db",)
    _CLAIM: Statement

    def __init__(self, db: Runner) -> None:
        self._db = db

    async def enqueue(self, row: OutboxRow) -> None:
        """Add a mail intent."""
        values = dict(zip((f.name for f in fields(OutboxRow)), astuple(row), strict=True))
        await self._db.rows(_ENQUEUE, values)

    async def claim(
        self, *, now: datetime, lease_until: datetime, claim: str, limit: int
    ) -> list[OutboxRow]:
        """Lease up to `limit` due rows; one statement."""
        params = {"now": now, "lease_until": lease_until, "claim": claim, "limit": limit}
        rows = await self._db.rows(self._CLAIM, params)
        return sorted((OutboxRow(*row) for row in rows), key=lambda row: row.next_attempt_at)

    async def done(self, row_id: str, *, claim: str) -> bool:
        """Delete the row if this claim still holds it."""
        return bool(await self._db.rows(_DONE, {"id": row_id, "holder": claim}))

    async def defer(self, row_id: str, *, claim: str, until: datetime, error: str) -> None:
        """Release the lease; due again at `until`."""
        params = {"id": row_id, "holder": claim, "until": until, "error": error[:256]}
        await self._db.rows(_DEFER, params)

    async def pending(self) -> int:
        """Rows not yet sent."""
        rows = await self._db.rows(_PENDING, {})
        return int(rows[0][0])

"""Clients, service secrets and the durable revocation records in SQL, for both backends.

The statements are dialect-neutral Core but for the two first-writer-wins INSERTs
(`ON CONFLICT DO NOTHING`), which each backend builds with its dialect's `insert`
(`first_writer_wins`) on its subclasses (repositories/postgres/small.py, sqlite/small.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass, fields
from datetime import datetime
from typing import ClassVar, cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from auth_service.db.runner import Runner
from auth_service.db.statements import Statement
from auth_service.errors import ClientExists
from auth_service.models import (
    OAuthClient,
    RevocationGeneration,
    RevokedAccessToken,
    RevokedClientEpoch,
    ServiceSecret,
    Session,
    User,
)
from auth_service.repositories.rows import ClientRow, RecentRevocations
from auth_service.repositories.sql_expiry import purge_all, purge_statement

__all__ = [
    "FirstWriterWins",
    "SqlClients",
    "SqlRevocations",
    "SqlServiceSecrets",
    "first_writer_wins",
]

_CLIENTS = cast(Table, OAuthClient.__table__)
_SECRETS = cast(Table, ServiceSecret.__table__)
_REVOKED = cast(Table, RevokedAccessToken.__table__)
_SESSIONS = cast(Table, Session.__table__)
_USERS = cast(Table, User.__table__)
_GENERATION = cast(Table, RevocationGeneration.__table__)
_EPOCHS = cast(Table, RevokedClientEpoch.__table__)

_CLIENT_COLUMNS = tuple(_CLIENTS.c[field.name] for field in fields(ClientRow))
_GET_CLIENT = Statement(select(*_CLIENT_COLUMNS).where(_CLIENTS.c.client_id == bindparam("id")))
_ALL_CLIENTS = Statement(select(*_CLIENT_COLUMNS).order_by(_CLIENTS.c.client_id))
_ADD_CLIENT = Statement(insert(_CLIENTS), [column.name for column in _CLIENT_COLUMNS])
_REMOVE_CLIENT = Statement(
    delete(_CLIENTS)
    .where(_CLIENTS.c.client_id == bindparam("id"))
    .returning(_CLIENTS.c.token_epoch)
)
# Compare-and-set on the epoch: of two concurrent changes one wins, the other re-reads.
_REPLACE_CREDENTIALS = Statement(
    update(_CLIENTS)
    .where(_CLIENTS.c.client_id == bindparam("id"), _CLIENTS.c.token_epoch == bindparam("old"))
    .values(
        secret_hash=bindparam("secret_hash"),
        jwks=bindparam("jwks"),
        disabled_at=bindparam("disabled_at"),
        token_epoch=bindparam("epoch"),
    )
    .returning(_CLIENTS.c.client_id)
)
_REVOKE_EPOCH = Statement(
    insert(_EPOCHS).values(
        epoch=bindparam("epoch"), client_id=bindparam("id"), revoked_at=bindparam("now")
    )
)
_RECENT_EPOCHS = Statement(
    select(_EPOCHS.c.epoch, _EPOCHS.c.revoked_at).where(_EPOCHS.c.revoked_at > bindparam("t"))
)

_READ_SECRET = Statement(select(_SECRETS.c.value).where(_SECRETS.c.name == bindparam("name")))

_READ_GENERATION = Statement(select(_GENERATION.c.value))  # its one row
_RECENT_SESSIONS = Statement(
    select(_SESSIONS.c.id, _SESSIONS.c.revoked_at).where(_SESSIONS.c.revoked_at > bindparam("t"))
)
_RECENT_TOKENS = Statement(
    select(_REVOKED.c.jti, _REVOKED.c.expires_at).where(_REVOKED.c.expires_at > bindparam("t"))
)
_PURGE_REVOKED_TOKENS = purge_statement(
    _REVOKED, _REVOKED.c.jti, _REVOKED.c.expires_at < bindparam("before")
)
_RECENT_USERS = Statement(
    select(_USERS.c.id, _USERS.c.credential_version, _USERS.c.tokens_valid_after).where(
        _USERS.c.tokens_valid_after > bindparam("t")
    )
)


DialectInsert = Callable[[Table], postgresql.Insert | sqlite.Insert]


@dataclass(frozen=True, slots=True)
class FirstWriterWins:
    """The INSERTs that keep an existing row (`ON CONFLICT DO NOTHING`), for one dialect."""

    secret: Statement
    revoked_token: Statement


def first_writer_wins(insert: DialectInsert) -> FirstWriterWins:
    """Build the conflict-ignoring INSERTs with a dialect's `insert` (postgresql, sqlite)."""
    return FirstWriterWins(
        # Replicas starting together all end up with the first writer's secret.
        secret=Statement(
            insert(_SECRETS)
            .values(name=bindparam("name"), value=bindparam("value"))
            .on_conflict_do_nothing()
        ),
        revoked_token=Statement(
            insert(_REVOKED)
            .values(
                jti=bindparam("jti"), expires_at=bindparam("expires"), revoked_at=bindparam("now")
            )
            .on_conflict_do_nothing()
        ),
    )


class SqlClients:
    """ClientRepository over any runner (a backend subclasses it)."""

    __slots__ = ("_db",)

    def __init__(self, db: Runner) -> None:
        self._db = db

    async def get(self, client_id: str) -> ClientRow | None:
        """One client by id."""
        rows = await self._db.rows(_GET_CLIENT, {"id": client_id})
        return ClientRow(*rows[0]) if rows else None

    async def add(self, client: ClientRow) -> None:
        """Insert a client; an existing id raises ClientExists."""
        values = dict(zip((f.name for f in fields(ClientRow)), astuple(client), strict=True))
        try:
            await self._db.rows(_ADD_CLIENT, values)
        except IntegrityError as exc:
            raise ClientExists from exc

    async def all(self) -> list[ClientRow]:
        """Every registered client, by id."""
        return [ClientRow(*row) for row in await self._db.rows(_ALL_CLIENTS, {})]

    async def remove(self, client_id: str) -> str | None:
        """Delete a client; its token epoch, or None when there was none."""
        rows = await self._db.rows(_REMOVE_CLIENT, {"id": client_id})
        return str(rows[0][0]) if rows else None

    async def replace_credentials(self, old: ClientRow, new: ClientRow) -> bool:
        """Store `new`'s secret, keys, disabled time and epoch if `old`'s epoch is current."""
        values = {
            "id": old.client_id,
            "old": old.token_epoch,
            "secret_hash": new.secret_hash,
            "jwks": new.jwks,
            "disabled_at": new.disabled_at,
            "epoch": new.token_epoch,
        }
        return bool(await self._db.rows(_REPLACE_CREDENTIALS, values))

    async def revoke_epoch(self, client_id: str, epoch: str, *, now: datetime) -> None:
        """Record a token epoch revoked (each epoch is revoked once: it is never reused)."""
        await self._db.rows(_REVOKE_EPOCH, {"epoch": epoch, "id": client_id, "now": now})


class SqlServiceSecrets:
    """ServiceSecretRepository over any runner; a backend subclass sets `inserts`."""

    __slots__ = ("_db",)
    inserts: ClassVar[FirstWriterWins]

    def __init__(self, db: Runner) -> None:
        self._db = db

    async def ensure(self, name: str, candidate: str) -> str:
        """INSERT ... ON CONFLICT DO NOTHING, then read: the first writer's value."""
        await self._db.rows(self.inserts.secret, {"name": name, "value": candidate})
        rows = await self._db.rows(_READ_SECRET, {"name": name})
        return str(rows[0][0])


class SqlRevocations:
    """RevocationRepository (the durable SQL side) over any runner; a backend subclass sets
    `inserts`."""

    __slots__ = ("_db",)
    inserts: ClassVar[FirstWriterWins]

    def __init__(self, db: Runner) -> None:
        self._db = db

    async def record_access_token(self, *, jti: str, expires_at: datetime, now: datetime) -> None:
        """Remember a revoked access token until it expires (a repeat changes nothing)."""
        params = {"jti": jti, "expires": expires_at, "now": now}
        await self._db.rows(self.inserts.revoked_token, params)

    async def generation(self) -> int:
        """How many revocations SQL has recorded (bumped by triggers in their transaction)."""
        rows = await self._db.rows(_READ_GENERATION, {})
        return int(rows[0][0]) if rows else 0

    async def recent(self, *, since: datetime) -> RecentRevocations:
        """What the denylist must hold since `since`."""
        sessions = await self._db.rows(_RECENT_SESSIONS, {"t": since})
        tokens = await self._db.rows(_RECENT_TOKENS, {"t": since})
        users = await self._db.rows(_RECENT_USERS, {"t": since})
        epochs = await self._db.rows(_RECENT_EPOCHS, {"t": since})
        return RecentRevocations(
            # A client's revoked token epoch is the `sid` of its client_credentials tokens.
            sessions=[(row[0], row[1]) for row in [*sessions, *epochs] if row[1] is not None],
            tokens=[(row[0], row[1]) for row in tokens],
            users=[(row[0], row[1], row[2]) for row in users if row[2] is not None],
        )

    async def purge_expired(self, *, before: datetime) -> int:
        """Forget revoked access tokens that expired before `before`."""
        return await purge_all(self._db, _PURGE_REVOKED_TOKENS, {"before": before})

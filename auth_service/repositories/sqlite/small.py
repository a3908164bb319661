"""Clients, service secrets and the durable revocation records on SQLite (on the worker)."""

from __future__ import annotations

from dataclasses import astuple, fields
from datetime import datetime
from typing import cast

from sqlalchemy import Table, bindparam, delete, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from auth_service.db.sqlite_worker import SQLiteWorker, WorkerSession
from auth_service.db.statements import Statement
from auth_service.errors import ClientExists
from auth_service.models import (
    OAuthClient,
    RevokedAccessToken,
    RevokedClientEpoch,
    ServiceSecret,
    Session,
    User,
)
from auth_service.repositories.rows import ClientRow, RecentRevocations

__all__ = ["SqliteClients", "SqliteRevocations", "SqliteServiceSecrets"]

_CLIENTS = cast(Table, OAuthClient.__table__)
_SECRETS = cast(Table, ServiceSecret.__table__)
_REVOKED = cast(Table, RevokedAccessToken.__table__)
_SESSIONS = cast(Table, Session.__table__)
_USERS = cast(Table, User.__table__)
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

# The first writer wins, so replicas starting together all end up with the same value.
_INSERT_SECRET = Statement(
    sqlite.insert(_SECRETS)
    .values(name=bindparam("name"), value=bindparam("value"))
    .on_conflict_do_nothing()
)
_READ_SECRET = Statement(select(_SECRETS.c.value).where(_SECRETS.c.name == bindparam("name")))

_RECORD_TOKEN = Statement(
    sqlite.insert(_REVOKED)
    .values(jti=bindparam("jti"), expires_at=bindparam("expires"), revoked_at=bindparam("now"))
    .on_conflict_do_nothing()
)
_RECENT_SESSIONS = Statement(
    select(_SESSIONS.c.id, _SESSIONS.c.revoked_at).where(_SESSIONS.c.revoked_at > bindparam("t"))
)
_RECENT_TOKENS = Statement(
    select(_REVOKED.c.jti, _REVOKED.c.expires_at).where(_REVOKED.c.expires_at > bindparam("t"))
)
_RECENT_USERS = Statement(
    select(_USERS.c.id, _USERS.c.credential_version, _USERS.c.tokens_valid_after).where(
        _USERS.c.tokens_valid_after > bindparam("t")
    )
)


class SqliteClients:
    """ClientRepository on SQLite."""

    __slots__ = ("_db",)

    def __init__(self, db: SQLiteWorker | WorkerSession) -> None:
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


class SqliteServiceSecrets:
    """ServiceSecretRepository on SQLite."""

    __slots__ = ("_db",)

    def __init__(self, db: SQLiteWorker | WorkerSession) -> None:
        self._db = db

    async def ensure(self, name: str, candidate: str) -> str:
        """INSERT ... ON CONFLICT DO NOTHING, then read: the first writer's value."""
        await self._db.rows(_INSERT_SECRET, {"name": name, "value": candidate})
        rows = await self._db.rows(_READ_SECRET, {"name": name})
        return str(rows[0][0])


class SqliteRevocations:
    """RevocationRepository (the durable SQL side) on SQLite."""

    __slots__ = ("_db",)

    def __init__(self, db: SQLiteWorker | WorkerSession) -> None:
        self._db = db

    async def record_access_token(self, *, jti: str, expires_at: datetime, now: datetime) -> None:
        """Remember a revoked access token until it expires (a repeat changes nothing)."""
        await self._db.rows(_RECORD_TOKEN, {"jti": jti, "expires": expires_at, "now": now})

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

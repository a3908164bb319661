"""Browser sessions, pending authorization requests, codes and consents in SQL.

The statements are dialect-neutral Core, shared by both backends (like sql_users.py); only
the consent upsert differs, so each backend passes its own. The authorization hot path is
one statement per call: the browser session is read with its user's state and the
consent for the client in one SELECT, and a code is spent by one UPDATE ... RETURNING.
"""

from __future__ import annotations

from dataclasses import astuple, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Column, Table, and_, bindparam, delete, exists, insert, select, update

from auth_service.db.runner import Runner
from auth_service.db.statements import Statement
from auth_service.models import (
    AuthorizationCode,
    AuthorizationRequest,
    BrowserSession,
    Consent,
    Session,
    User,
)
from auth_service.repositories.rows import (
    AuthorizationCodeRow,
    BrowserSessionFound,
    BrowserSessionRow,
    PendingRequestRow,
)
from auth_service.repositories.sql_expiry import purge_all, purge_statement

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["CONSENTS", "SqlAuthorizations", "SqlBrowserSessions"]

_BROWSER = cast(Table, BrowserSession.__table__)
_REQUESTS = cast(Table, AuthorizationRequest.__table__)
_CODES = cast(Table, AuthorizationCode.__table__)
CONSENTS = cast(Table, Consent.__table__)
_SESSIONS = cast(Table, Session.__table__)
_USERS = cast(Table, User.__table__)
_B, _R, _K, _C, _S, _U = _BROWSER.c, _REQUESTS.c, _CODES.c, CONSENTS.c, _SESSIONS.c, _USERS.c


def _columns(table: Table, row: type) -> tuple[Column[Any], ...]:
    return tuple(table.c[field.name] for field in fields(row))


def _values(row: DataclassInstance) -> dict[str, object]:
    return dict(zip((f.name for f in fields(row)), astuple(row), strict=True))


_BROWSER_COLUMNS = _columns(_BROWSER, BrowserSessionRow)
_ADD_BROWSER = Statement(insert(_BROWSER), [f.name for f in fields(BrowserSessionRow)])
_FIND_BROWSER = Statement(
    select(*_BROWSER_COLUMNS, _U.username, _U.is_active, _U.scopes, _U.credential_version)
    .add_columns(_C.scopes, _U.email, _U.email_verified)
    .join_from(_BROWSER, _USERS, _U.id == _B.user_id)
    .outerjoin(CONSENTS, and_(_C.user_id == _B.user_id, _C.client_id == bindparam("client_id")))
    .where(_B.token_hash == bindparam("hash"))
)
# A new login in the same browser by the same user: a new cookie, a new auth_time, the
# same session id (the `sid` its relying parties know).
_REAUTHENTICATE = Statement(
    update(_BROWSER)
    .where(_B.id == bindparam("id"), _B.user_id == bindparam("user_id"), _B.revoked_at.is_(None))
    .values(
        token_hash=bindparam("token_hash"),
        auth_time=bindparam("auth_time"),
        amr=bindparam("amr"),
        acr=bindparam("acr"),
        expires_at=bindparam("expires_at"),
    )
    .returning(_B.id)
)
_REVOKE_BROWSER = Statement(
    update(_BROWSER)
    .where(_B.id == bindparam("id"), _B.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
    .returning(_B.user_id)
)
_REVOKE_USERS_BROWSERS = Statement(
    update(_BROWSER)
    .where(_B.user_id == bindparam("user_id"), _B.revoked_at.is_(None))
    .values(revoked_at=bindparam("now"))
    .returning(_B.id)
)
# Kept while a session opened through it is open: a logout naming it (an ID token's `sid`)
# must still end those sessions.
_PURGE_BROWSER = purge_statement(
    _BROWSER,
    _B.id,
    _B.expires_at < bindparam("before"),
    ~exists().where(
        _S.browser_session_id == _B.id,
        _S.revoked_at.is_(None),
        _S.idle_expires_at > bindparam("now"),
        _S.absolute_expires_at > bindparam("now"),
    ),
)
_BROWSER_BY_ID = Statement(select(*_BROWSER_COLUMNS).where(_B.id == bindparam("id")))
_LINKED = Statement(
    select(_S.id).where(_S.browser_session_id == bindparam("id"), _S.revoked_at.is_(None))
)

_ADD_REQUEST = Statement(insert(_REQUESTS), [f.name for f in fields(PendingRequestRow)])
_GET_REQUEST = Statement(
    select(*_columns(_REQUESTS, PendingRequestRow)).where(_R.id == bindparam("id"))
)
_UPDATE_REQUEST = Statement(
    update(_REQUESTS).where(_R.id == bindparam("id")).values(parameters=bindparam("parameters"))
)
_DROP_REQUEST = Statement(delete(_REQUESTS).where(_R.id == bindparam("id")))

_CODE_COLUMNS = _columns(_CODES, AuthorizationCodeRow)
_ADD_CODE = Statement(insert(_CODES), [f.name for f in fields(AuthorizationCodeRow)])
# Single use: the code is spent by the one UPDATE that finds it unspent and unexpired.
_CONSUME_CODE = Statement(
    update(_CODES)
    .where(
        _K.code_hash == bindparam("hash"),
        _K.used_at.is_(None),
        _K.expires_at > bindparam("now"),
    )
    .values(used_at=bindparam("now"))
    .returning(*_CODE_COLUMNS)
)
_FIND_CODE = Statement(select(*_CODE_COLUMNS).where(_K.code_hash == bindparam("hash")))
_PURGE_REQUESTS = purge_statement(_REQUESTS, _R.id, _R.expires_at < bindparam("before"))
_PURGE_CODES = purge_statement(_CODES, _K.code_hash, _K.expires_at < bindparam("before"))


class SqlBrowserSessions:
    """BrowserSessionRepository in SQL."""

    __slots__ = ("_db",)

    def __init__(self, db: Runner) -> None:
        self._db = db

    async def add(self, row: BrowserSessionRow) -> None:
        """Insert a new browser session."""
        await self._db.rows(_ADD_BROWSER, _values(row))

    async def find(self, token_hash: str, *, client_id: str) -> BrowserSessionFound | None:
        """The session of a cookie, its user's state and consent for `client_id` (one SELECT)."""
        rows = await self._db.rows(_FIND_BROWSER, {"hash": token_hash, "client_id": client_id})
        if not rows:
            return None
        row = tuple(rows[0])
        width = len(_BROWSER_COLUMNS)
        return BrowserSessionFound(
            session=BrowserSessionRow(*row[:width]),
            username=cast(str, row[width]),
            user_active=cast(bool, row[width + 1]),
            user_scopes=cast(str, row[width + 2]),
            user_credential_version=cast(int, row[width + 3]),
            consented_scopes=cast(str | None, row[width + 4]),
            email=cast(str | None, row[width + 5]),
            email_verified=bool(row[width + 6]),
        )

    async def get(self, session_id: str) -> BrowserSessionRow | None:
        """A browser session by id (the `sid` of its ID tokens)."""
        rows = await self._db.rows(_BROWSER_BY_ID, {"id": session_id})
        return BrowserSessionRow(*rows[0]) if rows else None

    async def reauthenticate(
        self,
        session_id: str,
        *,
        user_id: str,
        token_hash: str,
        auth_time: datetime,
        amr: str,
        acr: str | None,
        expires_at: datetime,
    ) -> bool:
        """New cookie and auth_time for the same user's open session; False if none."""
        params = {
            "id": session_id,
            "user_id": user_id,
            "token_hash": token_hash,
            "auth_time": auth_time,
            "amr": amr,
            "acr": acr,
            "expires_at": expires_at,
        }
        return bool(await self._db.rows(_REAUTHENTICATE, params))

    async def revoke(self, session_id: str, *, now: datetime) -> str | None:
        """End a browser session; its user's id, or None if it was not open."""
        rows = await self._db.rows(_REVOKE_BROWSER, {"id": session_id, "now": now})
        return cast(str, rows[0][0]) if rows else None

    async def revoke_all_of(self, user_id: str, *, now: datetime) -> list[str]:
        """End every open browser session of a user; their ids."""
        rows = await self._db.rows(_REVOKE_USERS_BROWSERS, {"user_id": user_id, "now": now})
        return [cast(str, row[0]) for row in rows]

    async def linked_sessions(self, session_id: str) -> list[str]:
        """The unrevoked sessions (refresh families) opened through a browser session."""
        return [row[0] for row in await self._db.rows(_LINKED, {"id": session_id})]

    async def purge_expired(self, *, before: datetime, now: datetime) -> int:
        """Delete sessions expired before `before` with no open session opened through them."""
        return await purge_all(self._db, _PURGE_BROWSER, {"before": before, "now": now})


class SqlAuthorizations:
    """AuthorizationRepository in SQL; `upsert_consent` is the backend's INSERT ... ON
    CONFLICT statement."""

    __slots__ = ("_db", "_upsert_consent")

    def __init__(self, db: Runner, upsert_consent: Statement) -> None:
        self._db = db
        self._upsert_consent = upsert_consent

    async def save_request(self, row: PendingRequestRow) -> None:
        """Store a pending authorization request."""
        await self._db.rows(_ADD_REQUEST, _values(row))

    async def pending_request(self, request_id: str) -> PendingRequestRow | None:
        """A pending request by id (expired ones too: the service checks)."""
        rows = await self._db.rows(_GET_REQUEST, {"id": request_id})
        return PendingRequestRow(*rows[0]) if rows else None

    async def update_request(self, request_id: str, parameters: str) -> None:
        """Record a step done (login, consent) on a pending request."""
        await self._db.rows(_UPDATE_REQUEST, {"id": request_id, "parameters": parameters})

    async def drop_request(self, request_id: str) -> None:
        """Forget a pending request (answered)."""
        await self._db.rows(_DROP_REQUEST, {"id": request_id})

    async def add_code(self, row: AuthorizationCodeRow) -> None:
        """Store a new authorization code."""
        await self._db.rows(_ADD_CODE, _values(row))

    async def consume_code(self, code_hash: str, *, now: datetime) -> AuthorizationCodeRow | None:
        """Spend an unspent, unexpired code (compare-and-set); None if that failed."""
        rows = await self._db.rows(_CONSUME_CODE, {"hash": code_hash, "now": now})
        return AuthorizationCodeRow(*rows[0]) if rows else None

    async def find_code(self, code_hash: str) -> AuthorizationCodeRow | None:
        """A code by hash, spent or not (to tell a replay from a bad code)."""
        rows = await self._db.rows(_FIND_CODE, {"hash": code_hash})
        return AuthorizationCodeRow(*rows[0]) if rows else None

    async def remember_consent(
        self, *, user_id: str, client_id: str, scopes: str, now: datetime
    ) -> None:
        """Store what the user allowed the client (replacing what was remembered)."""
        params = {"user_id": user_id, "client_id": client_id, "scopes": scopes, "now": now}
        await self._db.rows(self._upsert_consent, params)

    async def purge_expired(self, *, before: datetime) -> int:
        """Delete pending requests and codes (spent or not) expired before `before`."""
        requests = await purge_all(self._db, _PURGE_REQUESTS, {"before": before})
        return requests + await purge_all(self._db, _PURGE_CODES, {"before": before})

"""Second factors in SQL: TOTP factors, recovery codes and MFA tokens.

The statements are Core, shared by both backends, except the enrolment upsert, whose
ON CONFLICT construct each dialect spells with its own insert (a backend passes it in).
Every "use once" is a compare-and-set in the statement itself (UPDATE ... WHERE <not yet
used> RETURNING): of two concurrent uses, the database lets exactly one match.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, func, insert, or_, select, update

from auth_service.db.runner import Runner
from auth_service.db.statements import Statement
from auth_service.models import MfaToken, RecoveryCode, TotpFactor
from auth_service.repositories.rows import MfaTokenRow, TotpFactorRow
from auth_service.repositories.sql_expiry import purge_all, purge_statement

__all__ = ["FACTORS", "SqlMfa", "pending_upsert"]

FACTORS = cast(Table, TotpFactor.__table__)
_CODES = cast(Table, RecoveryCode.__table__)
_TOKENS = cast(Table, MfaToken.__table__)
_F, _C, _T = FACTORS.c, _CODES.c, _TOKENS.c

_FACTOR_COLUMNS = tuple(_F[field.name] for field in fields(TotpFactorRow))
_FACTOR = Statement(select(*_FACTOR_COLUMNS).where(_F.user_id == bindparam("user_id")))
_LATER_STEP = or_(_F.last_used_step.is_(None), _F.last_used_step < bindparam("step"))
_CONFIRM = Statement(
    update(FACTORS)
    .where(_F.user_id == bindparam("user_id"), _F.confirmed_at.is_(None), _LATER_STEP)
    .values(confirmed_at=bindparam("now"), last_used_step=bindparam("step"))
    .returning(_F.user_id)
)
_USE_STEP = Statement(
    update(FACTORS)
    .where(_F.user_id == bindparam("user_id"), _F.confirmed_at.is_not(None), _LATER_STEP)
    .values(last_used_step=bindparam("step"))
    .returning(_F.user_id)
)
_REMOVE_FACTOR = Statement(
    delete(FACTORS).where(_F.user_id == bindparam("user_id")).returning(_F.user_id)
)
_REMOVE_CODES = Statement(delete(_CODES).where(_C.user_id == bindparam("user_id")))
_ADD_CODE = Statement(insert(_CODES), ["code_hash", "user_id", "created_at"])
_USE_CODE = Statement(
    update(_CODES)
    .where(
        _C.code_hash == bindparam("hash"),
        _C.user_id == bindparam("user_id"),
        _C.used_at.is_(None),
    )
    .values(used_at=bindparam("now"))
    .returning(_C.code_hash)
)
_UNUSED_CODES = Statement(
    select(func.count())
    .select_from(_CODES)
    .where(_C.user_id == bindparam("user_id"), _C.used_at.is_(None))
)
_REMOVE_TOKENS = Statement(delete(_TOKENS).where(_T.user_id == bindparam("user_id")))
_DROP_STALE_TOKENS = Statement(
    delete(_TOKENS).where(
        _T.user_id == bindparam("user_id"),
        or_(_T.expires_at <= bindparam("now"), _T.used_at.is_not(None)),
    )
)
_PURGE_TOKENS = purge_statement(_TOKENS, _T.token_hash, _T.expires_at < bindparam("before"))
_ADD_TOKEN = Statement(
    insert(_TOKENS),
    ["token_hash", "user_id", "client_id", "scope", "credential_version", "expires_at"],
)
_TOKEN_ROW = (_T.user_id, _T.client_id, _T.scope, _T.credential_version)
_LIVE_TOKEN = (_T.token_hash == bindparam("hash"), _T.used_at.is_(None))
_PEEK_TOKEN = Statement(select(*_TOKEN_ROW).where(*_LIVE_TOKEN, _T.expires_at > bindparam("now")))
_CLAIM_TOKEN = Statement(
    update(_TOKENS)
    .where(*_LIVE_TOKEN, _T.expires_at > bindparam("now"))
    .values(used_at=bindparam("now"))
    .returning(*_TOKEN_ROW)
)


def pending_upsert(dialect_insert: Any) -> Statement:
    """Insert a pending factor, or replace one still pending; a confirmed one stays (no
    row returned). `dialect_insert` is postgresql.insert or sqlite.insert."""
    statement = dialect_insert(FACTORS).values(
        user_id=bindparam("user_id"),
        key_id=bindparam("key_id"),
        secret_ciphertext=bindparam("ciphertext"),
        created_at=bindparam("now"),
    )
    return Statement(
        statement.on_conflict_do_update(
            index_elements=[_F.user_id],
            set_={
                "key_id": statement.excluded.key_id,
                "secret_ciphertext": statement.excluded.secret_ciphertext,
                "created_at": statement.excluded.created_at,
                "last_used_step": None,
            },
            where=_F.confirmed_at.is_(None),
        ).returning(_F.user_id)
    )


class SqlMfa:
    """MfaRepository over any runner; a backend subclass supplies its upsert."""

    __slots__ = ("_db",)
    _put_pending: Statement

    def __init__(self, db: Runner) -> None:
        self._db = db

    async def factor(self, user_id: str) -> TotpFactorRow | None:
        """The user's factor, pending or confirmed."""
        rows = await self._db.rows(_FACTOR, {"user_id": user_id})
        return TotpFactorRow(*rows[0]) if rows else None

    async def put_pending(
        self, user_id: str, *, key_id: str, ciphertext: str, now: datetime
    ) -> bool:
        """Store a pending factor (replacing a pending one); False if one is confirmed."""
        params = {"user_id": user_id, "key_id": key_id, "ciphertext": ciphertext, "now": now}
        return bool(await self._db.rows(self._put_pending, params))

    async def confirm(self, user_id: str, *, step: int, now: datetime) -> bool:
        """Confirm the pending factor with the code of `step` (compare-and-set)."""
        params = {"user_id": user_id, "step": step, "now": now}
        return bool(await self._db.rows(_CONFIRM, params))

    async def use_step(self, user_id: str, *, step: int) -> bool:
        """Accept a code of `step` if no code of it or a later step was (compare-and-set)."""
        return bool(await self._db.rows(_USE_STEP, {"user_id": user_id, "step": step}))

    async def remove(self, user_id: str) -> bool:
        """Delete the factor, recovery codes and MFA tokens; False if there was no factor.

        Tokens, then the factor, as a second login step locks them (no lock cycle)."""
        await self._db.rows(_REMOVE_TOKENS, {"user_id": user_id})
        removed = await self._db.rows(_REMOVE_FACTOR, {"user_id": user_id})
        await self._db.rows(_REMOVE_CODES, {"user_id": user_id})
        return bool(removed)

    async def replace_recovery_codes(
        self, user_id: str, code_hashes: list[str], *, now: datetime
    ) -> None:
        """Drop the user's recovery codes and store these (hashes only)."""
        await self._db.rows(_REMOVE_CODES, {"user_id": user_id})
        for code_hash in code_hashes:
            params = {"code_hash": code_hash, "user_id": user_id, "created_at": now}
            await self._db.rows(_ADD_CODE, params)

    async def use_recovery_code(self, user_id: str, code_hash: str, *, now: datetime) -> bool:
        """Spend an unused recovery code of the user (compare-and-set)."""
        params = {"hash": code_hash, "user_id": user_id, "now": now}
        return bool(await self._db.rows(_USE_CODE, params))

    async def unused_recovery_codes(self, user_id: str) -> int:
        """How many recovery codes the user has left."""
        rows = await self._db.rows(_UNUSED_CODES, {"user_id": user_id})
        return int(rows[0][0])

    async def add_token(
        self, token_hash: str, *, row: MfaTokenRow, expires_at: datetime, now: datetime
    ) -> None:
        """Store a new MFA token, dropping the user's expired and spent ones."""
        await self._db.rows(_DROP_STALE_TOKENS, {"user_id": row.user_id, "now": now})
        params = {
            "token_hash": token_hash,
            "user_id": row.user_id,
            "client_id": row.client_id,
            "scope": row.scope,
            "credential_version": row.credential_version,
            "expires_at": expires_at,
        }
        await self._db.rows(_ADD_TOKEN, params)

    async def peek_token(self, token_hash: str, *, now: datetime) -> MfaTokenRow | None:
        """An unexpired, unspent MFA token, without spending it."""
        rows = await self._db.rows(_PEEK_TOKEN, {"hash": token_hash, "now": now})
        return MfaTokenRow(*rows[0]) if rows else None

    async def claim_token(self, token_hash: str, *, now: datetime) -> MfaTokenRow | None:
        """Spend an unexpired MFA token (compare-and-set); None if it is not live."""
        rows = await self._db.rows(_CLAIM_TOKEN, {"hash": token_hash, "now": now})
        return MfaTokenRow(*rows[0]) if rows else None

    async def purge_tokens(self, *, before: datetime) -> int:
        """Delete MFA tokens (spent or not) expired before `before`."""
        return await purge_all(self._db, _PURGE_TOKENS, {"before": before})

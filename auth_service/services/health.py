"""Readiness: is each backing service reachable right now, and is the schema current?"""

from __future__ import annotations

import asyncio
import logging

from auth_service.errors import StoreUnavailable
from auth_service.repositories import Database
from auth_service.stores.revocation import RevocationStore

__all__ = ["check_readiness"]

log = logging.getLogger(__name__)

_CHECK_TIMEOUT_SECONDS = 2.0


async def _database_state(db: Database) -> tuple[str, str]:
    """(database, schema): reading the Alembic revision is also the connectivity check."""
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS):
            behind = await db.schema_is_behind()
    except Exception as exc:
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        return "unavailable", "unavailable"
    if behind:
        # Logins and registrations would fail on missing tables or columns.
        log.warning("readiness: database schema is behind the code; run `auth-service migrate`")
        return "ok", "behind"
    return "ok", "ok"


async def _store_ok(store: RevocationStore) -> bool:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS):
            await store.ping()
    except (StoreUnavailable, TimeoutError):
        log.warning("readiness: revocation store unreachable")
        return False
    return True


async def check_readiness(db: Database, store: RevocationStore) -> dict[str, str]:
    """`{"database": "ok" | "unavailable", "schema": "ok" | "behind" | "unavailable",
    "revocation_store": ...}`, checked concurrently."""
    (database, schema), revocations = await asyncio.gather(_database_state(db), _store_ok(store))
    return {
        "database": database,
        "schema": schema,
        "revocation_store": "ok" if revocations else "unavailable",
    }

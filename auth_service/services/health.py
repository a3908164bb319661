"""Readiness: is each backing service reachable right now?"""

from __future__ import annotations

import asyncio
import logging

from auth_service.errors import StoreUnavailable
from auth_service.repositories import Database
from auth_service.stores.revocation import RevocationStore

__all__ = ["check_readiness"]

log = logging.getLogger(__name__)

_CHECK_TIMEOUT_SECONDS = 2.0


async def _database_ok(db: Database) -> bool:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS):
            await db.ping()
    except Exception as exc:
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        return False
    return True


async def _store_ok(store: RevocationStore) -> bool:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS):
            await store.ping()
    except (StoreUnavailable, TimeoutError):
        log.warning("readiness: revocation store unreachable")
        return False
    return True


async def check_readiness(db: Database, store: RevocationStore) -> dict[str, str]:
    """`{"database": "ok" | "unavailable", "revocation_store": ...}`, checked concurrently."""
    database, revocations = await asyncio.gather(_database_ok(db), _store_ok(store))
    return {
        "database": "ok" if database else "unavailable",
        "revocation_store": "ok" if revocations else "unavailable",
    }

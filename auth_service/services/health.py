"""Readiness: is each backing service reachable right now?"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["check_readiness"]

log = logging.getLogger(__name__)

_CHECK_TIMEOUT_SECONDS = 2.0


async def _database_ok(engine: AsyncEngine) -> bool:
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        log.warning("readiness: database unreachable: %s", type(exc).__name__)
        return False
    return True


async def check_readiness(engine: AsyncEngine) -> dict[str, str]:
    """`{"database": "ok" | "unavailable"}`; more dependencies join as they are added."""
    return {"database": "ok" if await _database_ok(engine) else "unavailable"}

"""Startup objects leave the cyclic garbage collector's scans while the app serves.

An app holds ~110,000 GC-tracked objects once started (functions, tuples and dicts of
FastAPI, pydantic, SQLAlchemy and our modules), all alive until shutdown. Every full
collection walked all of them (90-220 ms on this machine) and freed almost nothing, a stall
of the event loop that showed as the p99 of idle `GET /users/me`. The lifespan freezes them
(gc.freeze) once started and unfreezes them at shutdown.
"""

from __future__ import annotations

import gc

from asgi_lifespan import LifespanManager

from auth_service.app import create_app
from auth_service.config import Settings
from tests.conftest import FakeClock


async def test_a_started_app_keeps_its_startup_objects_out_of_full_collections(
    settings: Settings, clock: FakeClock
) -> None:
    gc.unfreeze()  # whatever an earlier test left frozen
    async with LifespanManager(create_app(settings, clock=clock)):
        frozen = gc.get_freeze_count()
        gc.collect()
        scanned = len(gc.get_objects())  # what a full collection walks now
        assert frozen > 50_000, "the startup objects were not frozen"
        assert scanned < frozen / 2, f"a full collection still walks {scanned} objects"
    assert gc.get_freeze_count() == 0, "shutdown leaves objects frozen (never collectable)"

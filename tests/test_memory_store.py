"""The in-process revocation store learns of other processes' revocations by a marker file."""

from __future__ import annotations

import os
import time
from pathlib import Path

from auth_service.stores.revocation import MemoryStore, SeedData, announce_change


async def seeded(store: MemoryStore) -> bool:
    return (await store.status(token_id="t", session_id="s", user_id="u")).seeded


async def test_a_new_store_is_unseeded_until_seeded(tmp_path: Path) -> None:
    store = MemoryStore(change_marker=tmp_path / "marker")
    assert not await seeded(store)
    assert await store.seed(SeedData(ticket=await store.begin_seed()))
    assert await seeded(store)


async def test_an_announced_change_asks_for_a_reseed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    announce_change(marker)
    store = MemoryStore(change_marker=marker)
    assert await store.seed(SeedData(ticket=await store.begin_seed()))
    assert await seeded(store)
    for _ in range(3):  # back to back: the file system clock may not even tick
        announce_change(marker)
        assert not await seeded(store)
        assert await store.seed(SeedData(ticket=await store.begin_seed()))
        assert await seeded(store)


async def test_a_change_announced_during_a_reseed_keeps_the_store_unseeded(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker"
    store = MemoryStore(change_marker=marker)
    ticket = await store.begin_seed()  # before the reseed reads SQL
    announce_change(marker)  # another process commits and announces meanwhile
    assert not await store.seed(SeedData(ticket=ticket))
    assert not await seeded(store)
    assert await store.seed(SeedData(ticket=await store.begin_seed()))
    assert await seeded(store)


async def test_closing_announces_only_after_revoking_something(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    quiet = MemoryStore(change_marker=marker)
    await quiet.close()
    assert not marker.exists()
    writer = MemoryStore(change_marker=marker)
    await writer.set_user_not_before("u", 1, 60)
    await writer.close()
    assert marker.exists()
    assert os.listdir(tmp_path) == ["marker"]  # nothing staged left behind


async def test_without_a_marker_one_seed_lasts(tmp_path: Path) -> None:
    store = MemoryStore()
    assert await store.seed(SeedData(ticket=await store.begin_seed()))
    await store.revoke_token("t", 60)
    found = await store.status(token_id="t", session_id="s", user_id="u")
    assert found.seeded
    assert found.token_revoked


async def test_writes_never_weaken_an_entry(tmp_path: Path) -> None:
    store = MemoryStore()
    await store.set_user_not_before("u", 5, 60)
    await store.set_user_not_before("u", 3, 1)  # an older cut-off, written late
    found = await store.status(token_id="t", session_id="s", user_id="u")
    assert found.user_not_before == 5
    await store.revoke_token("t", 60)
    await store.revoke_token("t", 1)
    assert store._entries["revoked-token:t"][1] - time.monotonic() > 30  # the longer TTL stays

"""The in-process revocation store learns of other processes' revocations by a marker file."""

from __future__ import annotations

import os
from pathlib import Path

from auth_service.stores.revocation import MemoryStore, SeedData, announce_change


async def status(store: MemoryStore) -> tuple[bool, int]:
    found = await store.status(token_id="t", session_id="s", user_id="u")
    return found.seeded, found.generation


async def test_a_new_store_is_unseeded_until_seeded(tmp_path: Path) -> None:
    store = MemoryStore(change_marker=tmp_path / "marker")
    seeded, generation = await status(store)
    assert not seeded
    await store.seed(SeedData(generation=generation))
    assert (await status(store))[0]


async def test_an_announced_change_asks_for_a_reseed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    announce_change(marker)
    store = MemoryStore(change_marker=marker)
    await store.seed(SeedData(generation=(await status(store))[1]))
    assert (await status(store))[0]
    for _ in range(3):  # back to back: the file system clock may not even tick
        announce_change(marker)
        seeded, generation = await status(store)
        assert not seeded
        await store.seed(SeedData(generation=generation))
        assert (await status(store))[0]


async def test_a_change_announced_during_a_reseed_keeps_the_store_unseeded(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker"
    store = MemoryStore(change_marker=marker)
    _, started_at = await status(store)  # the reseed's probe, before it reads SQL
    announce_change(marker)  # another process commits and announces meanwhile
    await status(store)  # a request sees the announcement
    await store.seed(SeedData(generation=started_at))
    seeded, generation = await status(store)
    assert not seeded
    assert generation == started_at + 1


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
    await store.seed(SeedData())
    await store.revoke_token("t", 60)
    found = await store.status(token_id="t", session_id="s", user_id="u")
    assert found.seeded
    assert found.token_revoked

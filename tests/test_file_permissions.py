"""The embedded backend's files hold password hashes and keys: owner-only from creation."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from auth_service.app import open_runtime
from auth_service.cli import main
from tests.conftest import make_settings


@pytest.fixture(autouse=True)
def _usual_umask() -> Iterator[None]:
    """The common umask 022, under which files are created world-readable by default."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_migrate_creates_a_private_data_dir_and_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "fresh" / "data"
    monkeypatch.setenv("AUTH_DATA_DIR", str(data))
    monkeypatch.setenv("AUTH_ENVIRONMENT", "test")
    assert main(["migrate"]) == 0
    assert mode(data) == 0o700
    files = sorted(p for p in data.iterdir() if p.name.startswith("auth.db"))
    assert files, list(data.iterdir())
    for path in files:  # auth.db, and its -wal / -shm while they exist
        assert mode(path) == 0o600, path


async def test_serving_creates_a_private_data_dir_key_and_database(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data / 'auth.db'}"
    # The development key is created first, then the change marker, then the database.
    async with open_runtime(make_settings(url, data)) as runtime:
        await runtime.services.db.ping()
        assert mode(data) == 0o700
        assert mode(data / "keys") == 0o700
        for path in data.rglob("*"):
            if path.is_file():
                assert mode(path) & 0o077 == 0, path
        assert mode(data / "auth.db") == 0o600

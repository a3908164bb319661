"""`auth-service migrate` is safe to run from several processes at once, and can go down.

Two containers (a one-shot job and a replica with AUTH_MIGRATE_ON_START, or two replicas)
may migrate the same fresh database together: both must succeed and leave one schema.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from auth_service.cli import main
from auth_service.db.migrate import alembic_config, current_revision, migrate_to
from tests.conftest import POSTGRES_ADMIN_DSN, _postgres_admin, _service_missing
from tests.processes import service_env

ROUNDS = 3
MIGRATE_TIMEOUT_SECONDS = 60


@pytest.fixture
def fresh_postgres_databases() -> Iterator[list[str]]:
    """Empty PostgreSQL databases of this test (one per round), dropped afterwards."""
    names = [f"auth_migrate_race_{os.getpid()}_{secrets.token_hex(4)}" for _ in range(ROUNDS)]
    try:
        for name in names:
            asyncio.run(_postgres_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError) as exc:
        _service_missing("PostgreSQL", exc)
    base = POSTGRES_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield [f"{base}/{name}" for name in names]
    finally:
        for name in names:
            asyncio.run(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _migrate_concurrently(url: str, directory: Path) -> None:
    """Start two `auth-service migrate` processes on `url` together; both must succeed."""
    env = service_env(directory, AUTH_DATABASE_URL=url, AUTH_STARTUP_WAIT_SECONDS="10")
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "auth_service", "migrate"],
            env=env,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=MIGRATE_TIMEOUT_SECONDS) for process in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, f"a concurrent migrate failed:\n{err}"
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    assert current_revision(url) == head


@pytest.mark.slow
def test_two_concurrent_migrations_on_fresh_postgres_both_succeed(
    fresh_postgres_databases: list[str], tmp_path: Path
) -> None:
    for url in fresh_postgres_databases:
        _migrate_concurrently(url, tmp_path)


@pytest.mark.slow
def test_two_concurrent_migrations_on_a_fresh_sqlite_file_both_succeed(tmp_path: Path) -> None:
    for round_number in range(ROUNDS):
        url = f"sqlite+aiosqlite:///{tmp_path / f'race-{round_number}.db'}"
        _migrate_concurrently(url, tmp_path)


def test_migrate_to_a_revision_downgrades_and_upgrades(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    url = f"sqlite+aiosqlite:///{(tmp_path / 'auth.db').resolve()}"
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)

    assert main(["migrate"]) == 0
    assert current_revision(url) == head
    assert main(["migrate", "--to", previous]) == 0
    assert current_revision(url) == previous
    assert f"database schema is at revision {previous}" in capsys.readouterr().err
    assert main(["migrate", "--to", "base"]) == 0
    assert current_revision(url) is None
    assert main(["migrate", "--to", "head"]) == 0
    assert current_revision(url) == head


def test_migrate_to_an_unknown_revision_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    assert main(["migrate"]) == 0
    assert main(["migrate", "--to", "no_such_revision"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("auth-service: migrate --to: no revision 'no_such_revision'")


def test_migrate_to_a_revision_and_back_on_postgres(fresh_postgres_databases: list[str]) -> None:
    url = fresh_postgres_databases[0]
    script = ScriptDirectory.from_config(alembic_config(url))
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    migrate_to(url, "head")
    migrate_to(url, previous)
    assert current_revision(url) == previous
    migrate_to(url, "base")
    assert current_revision(url) is None
    migrate_to(url, head)
    assert current_revision(url) == head

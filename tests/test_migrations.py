"""The shipped Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from auth_service.db.base import Base
from auth_service.db.engine import create_engine
from auth_service.db.migrate import alembic_config, upgrade_to_head


def _schema_differences(url: str) -> list[Any]:
    def compare(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async def run() -> list[Any]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(compare)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrated_schema_matches_the_models(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue(f"{backend}_url")
    assert _schema_differences(url) == []


def test_downgrade_to_base_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'roundtrip.db'}"
    upgrade_to_head(url)
    command.downgrade(alembic_config(url), "base")
    upgrade_to_head(url)
    assert _schema_differences(url) == []


def test_username_skeleton_backfill_keeps_the_oldest_of_confusable_names(tmp_path: Path) -> None:
    path = tmp_path / "backfill.db"
    url = f"sqlite+aiosqlite:///{path}"
    command.upgrade(alembic_config(url), "0003")
    rows = [  # (id, username, created_at): registered before usernames were checked for looks
        ("u1", "alice", "2026-01-01 00:00:01"),
        ("u2", "\u0430lice", "2026-01-01 00:00:02"),  # Cyrillic U+0430: confusable, newer
        ("u3", "ALİCE", "2026-01-01 00:00:03"),
        ("u4", "bob", "2026-01-01 00:00:04"),
    ]
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO users (id, username, username_canonical, password_hash, is_active,"
            " created_at, updated_at, scopes) VALUES (?, ?, ?, 'x', 1, ?, ?, 'profile')",
            [(uid, name, name.casefold(), at, at) for uid, name, at in rows],
        )
    upgrade_to_head(url)
    with sqlite3.connect(path) as db:
        stored = dict(db.execute("SELECT id, username_skeleton FROM users").fetchall())
    assert stored == {"u1": "alice", "u2": None, "u3": None, "u4": "bob"}
    assert _schema_differences(url) == []


def test_clients_registered_before_the_introspection_permission_keep_their_access(
    tmp_path: Path,
) -> None:
    # Before 0006 every confidential client could introspect; upgrading must not cut off
    # the resource servers already deployed, and public clients never get it.
    url = f"sqlite+aiosqlite:///{tmp_path / 'clients.db'}"
    command.upgrade(alembic_config(url), "0003")

    async def run(*statements: str) -> list[Any]:
        engine = create_engine(url, pool_size=1)
        try:
            async with engine.begin() as connection:
                results = [await connection.execute(text(sql)) for sql in statements]
                return list(results[-1]) if results[-1].returns_rows else []
        finally:
            await engine.dispose()

    asyncio.run(
        run(
            "INSERT INTO oauth_clients (client_id, secret_hash, confidential, grant_types,"
            " scopes, created_at) VALUES ('rs', 'h', 1, '', '', '2026-01-01'),"
            " ('app', NULL, 0, 'password', 'profile', '2026-01-01')"
        )
    )
    upgrade_to_head(url)
    rows = asyncio.run(run("SELECT client_id, introspection FROM oauth_clients ORDER BY 1"))
    assert [tuple(row) for row in rows] == [("app", False), ("rs", True)]


def test_clients_registered_before_the_oidc_client_model_keep_working(tmp_path: Path) -> None:
    # Existing clients were registered for the password grant (first-party by nature):
    # they stay first-party, public ones require PKCE, confidential ones do not.
    url = f"sqlite+aiosqlite:///{tmp_path / 'clients.db'}"
    command.upgrade(alembic_config(url), "0007_service_secrets")
    with sqlite3.connect(tmp_path / "clients.db") as db:
        db.execute(
            "INSERT INTO oauth_clients (client_id, secret_hash, confidential, grant_types,"
            " scopes, created_at, introspection) VALUES"
            " ('backend', 'h', 1, 'password', 'profile', '2026-01-01', 0),"
            " ('mobile', NULL, 0, 'password refresh_token', 'profile', '2026-01-01', 0)"
        )
    upgrade_to_head(url)
    with sqlite3.connect(tmp_path / "clients.db") as db:
        rows = db.execute(
            "SELECT client_id, redirect_uris, post_logout_redirect_uris, first_party,"
            " require_pkce, id_token_alg, jwks FROM oauth_clients ORDER BY 1"
        ).fetchall()
    assert rows == [
        ("backend", "", "", 1, 0, "RS256", None),
        ("mobile", "", "", 1, 1, "RS256", None),
    ]
    assert _schema_differences(url) == []

"""Services see repositories and rows only: no database layer, SQLAlchemy or driver."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import auth_service

PACKAGE = Path(auth_service.__file__).parent
FORBIDDEN = (
    "auth_service.db",
    "auth_service.models",
    "auth_service.repositories.postgres",
    "auth_service.repositories.sqlite",
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "sqlite3",
    "alembic",
)


def imported_modules(source: str) -> set[str]:
    """Every module an `import` or `from ... import` in `source` names (TYPE_CHECKING too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def forbidden_in(source: str) -> set[str]:
    return {
        name
        for name in imported_modules(source)
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN)
    }


@pytest.mark.parametrize(
    "path", sorted((PACKAGE / "services").glob("*.py")), ids=lambda path: path.name
)
def test_a_service_imports_no_database_layer(path: Path) -> None:
    assert forbidden_in(path.read_text(encoding="utf-8")) == set()


def test_the_check_sees_every_import_form() -> None:
    source = (
        "import sqlalchemy\n"
        "from sqlalchemy.ext.asyncio import AsyncSession\n"
        "from auth_service import db\n"
        "from auth_service.db.engine import create_engine\n"
        "if TYPE_CHECKING:\n    import asyncpg\n"
        "from auth_service.repositories import Database\n"
    )
    assert forbidden_in(source) == {
        "sqlalchemy",
        "sqlalchemy.ext.asyncio",
        "sqlalchemy.ext.asyncio.AsyncSession",
        "auth_service.db",
        "auth_service.db.engine",
        "auth_service.db.engine.create_engine",
        "asyncpg",
    }

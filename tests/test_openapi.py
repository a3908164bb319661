"""openapi.json at the repo root is generated from the app and must stay current."""

from __future__ import annotations

import json
from pathlib import Path

from auth_service.app import create_app
from auth_service.cli import main
from tests.conftest import make_settings

COMMITTED = Path(__file__).resolve().parent.parent / "openapi.json"


def test_committed_openapi_matches_the_app(tmp_path: Path) -> None:
    app = create_app(make_settings("sqlite+aiosqlite:///unused.db", tmp_path))
    committed = json.loads(COMMITTED.read_text(encoding="utf-8"))
    assert committed == app.openapi(), "openapi.json is stale: run `make openapi` and commit it"


def test_cli_writes_the_same_document(tmp_path: Path) -> None:
    output = tmp_path / "openapi.json"
    assert main(["openapi", "--output", str(output)]) == 0
    assert output.read_text(encoding="utf-8") == COMMITTED.read_text(encoding="utf-8")


def test_password_flow_points_swagger_at_the_token_endpoint() -> None:
    schemes = json.loads(COMMITTED.read_text(encoding="utf-8"))["components"]["securitySchemes"]
    flow = schemes["OAuth2PasswordBearer"]["flows"]["password"]
    assert flow["tokenUrl"] == "token"
    assert "profile" in flow["scopes"]


def test_every_operation_with_a_body_documents_413() -> None:
    # BodySizeLimit answers 413 before any route runs, for every body it refuses.
    paths = json.loads(COMMITTED.read_text(encoding="utf-8"))["paths"]
    undocumented = [
        f"{method.upper()} {path}"
        for path, operations in paths.items()
        for method, operation in operations.items()
        if "requestBody" in operation and "413" not in operation["responses"]
    ]
    assert undocumented == []

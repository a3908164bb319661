"""docs/configuration.md is generated from the Settings fields and committed current."""

from __future__ import annotations

from pathlib import Path

from auth_service.config import Settings
from auth_service.config_docs import render

COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_the_committed_configuration_page_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is stale: run `make docs`"
    )


def test_every_setting_is_described_on_the_page() -> None:
    page = render()
    for name, field in Settings.model_fields.items():
        assert field.description, f"{name} has no docstring in auth_service/config.py"
        assert f"`AUTH_{name.upper()}`" in page

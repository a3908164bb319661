"""What README and docker-compose.yml tell operators to do with keys and proxies."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
OPERATOR_FILES = ["README.md", "docker-compose.yml"]


@pytest.mark.parametrize("name", OPERATOR_FILES)
def test_no_instruction_makes_a_file_world_readable(name: str) -> None:
    modes = re.findall(r"chmod\s+(?:-\w+\s+)*([0-7]{3,4})\b", (ROOT / name).read_text())
    assert modes, f"{name} no longer says how to protect the signing key"
    world = [mode for mode in modes if int(mode, 8) & 0o007]
    assert not world, f"{name} tells operators to chmod {world}: world-accessible"


def test_compose_sets_trusted_proxies_for_production() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    environment = compose["services"]["auth"]["environment"]
    assert environment["AUTH_ENVIRONMENT"] == "production"
    assert "AUTH_TRUSTED_PROXIES" in environment


def test_operations_names_the_compose_services_that_keep_a_named_volume() -> None:
    """docs/operations.md says which compose services keep state; Redis keeps none."""
    text = " ".join((ROOT / "docs" / "operations.md").read_text().split())
    claim = re.search(r"with ([\w ,]+?) on (?:a )?named volumes?", text)
    assert claim, "docs/operations.md no longer says which services keep a named volume"
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    named = {"PostgreSQL": "postgres", "Redis": "redis"}
    for product, service in named.items():
        keeps_volume = bool(services[service].get("volumes"))
        assert (product in claim.group(1)) == keeps_volume, (product, claim.group(0))


def test_operations_moves_a_key_file_with_keys_import() -> None:
    """`keys import` keeps the key file's kid, so the runbook must not promise broken tokens."""
    paragraphs = [
        " ".join(p.split()) for p in (ROOT / "docs" / "operations.md").read_text().split("\n\n")
    ]
    move = [p for p in paragraphs if p.startswith("Moving from `AUTH_SIGNING_KEY_FILE`")]
    assert move, "docs/operations.md no longer says how to move to AUTH_KEYS_DIR"
    assert "keys import" in move[0]
    assert "fail to verify" not in move[0]


@pytest.mark.parametrize("name", ["README.md", "docs/operations.md"])
def test_a_compose_exec_into_a_file_allocates_no_terminal(name: str) -> None:
    """`compose exec` gives the command a TTY by default, which turns a binary dump's \\n into
    \\r\\n on its way to the file: a redirected one needs -T."""
    text = (ROOT / name).read_text()
    redirected = re.findall(r"compose exec [^`\n]*>[^`\n]*", text)
    assert all(re.search(r"compose exec (?:\S+ )*-T\b", cmd) for cmd in redirected), redirected

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

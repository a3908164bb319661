"""docker-compose.yml and docker/, checked without a container engine.

The real bring-up (`podman-compose up`) runs in scripts/container-test where an engine and
the images' registry are reachable; these checks run everywhere, in `make test`.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from auth_service.config import Settings

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DOTENV = {
    "ISSUER_URL": "https://auth.example.com",
    "POSTGRES_PASSWORD": "secret",
    "AUTH_TRUSTED_PROXIES": '["172.30.57.0/24"]',
}
AUTH_IMAGE_SERVICES = ("migrate", "auth")


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return document


def _interpolate(value: str, dotenv: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, from a .env's variables."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.group(1), match.group(2), match.group(3)
        if name in dotenv:
            return dotenv[name]
        if kind == ":?":
            raise AssertionError(f"${{{name}}} required: {rest}")
        return rest if kind == ":-" else ""

    return re.sub(r"\$\{(\w+)(:[-?])?([^}]*)\}", one, value)


def _settings_of(service: dict[str, Any], dotenv: dict[str, str]) -> Settings:
    env = {key: _interpolate(str(value), dotenv) for key, value in service["environment"].items()}
    fields = {f"AUTH_{name.upper()}" for name in Settings.model_fields}
    unknown = set(env) - fields - {"AUTH_MIGRATE_ON_START"}  # read by docker/entrypoint
    assert not unknown, f"not settings of the service: {sorted(unknown)}"
    with pytest.MonkeyPatch.context() as patch:  # as the container's environment
        for key, value in env.items():
            patch.setenv(key, value)
        return Settings(_env_file=None)


def test_services_and_the_one_shot_migration_the_app_waits_for() -> None:
    services = _compose()["services"]
    assert set(services) == {"migrate", "auth", "proxy", "postgres", "redis"}
    migrate, auth = services["migrate"], services["auth"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert auth["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert auth["depends_on"]["redis"]["condition"] == "service_healthy"
    assert auth["command"] == ["serve"]


def test_production_settings_are_accepted_and_read_from_dotenv() -> None:
    services = _compose()["services"]
    for name in AUTH_IMAGE_SERVICES:
        service = services[name]
        assert service["build"]["context"] == "."
        assert "signing_key" in service["secrets"]
        settings = _settings_of(service, SAMPLE_DOTENV)
        assert settings.environment == "production"
        assert settings.workers >= 1
        # The documented value: the project's own network (the proxy is the only way in
        # from outside). By default `migrate` migrates, the app does not.
        subnet = _compose()["networks"]["backend"]["ipam"]["config"][0]["subnet"]
        assert [str(net) for net in settings.trusted_proxies] == [subnet]
        assert json.dumps([subnet]) in (ROOT / "docker-compose.yml").read_text().replace("\\", "")
        env = service["environment"]
        assert _interpolate(env["AUTH_MIGRATE_ON_START"], SAMPLE_DOTENV) == "false"
        # Both come from .env when set there.
        custom = {**SAMPLE_DOTENV, "AUTH_TRUSTED_PROXIES": '["10.0.0.0/8"]'}
        assert [str(n) for n in _settings_of(service, custom).trusted_proxies] == ["10.0.0.0/8"]
        on_start = {**SAMPLE_DOTENV, "AUTH_MIGRATE_ON_START": "true"}
        assert _interpolate(env["AUTH_MIGRATE_ON_START"], on_start) == "true"


@pytest.mark.parametrize("name", ["ISSUER_URL", "POSTGRES_PASSWORD", "AUTH_TRUSTED_PROXIES"])
def test_missing_dotenv_values_are_refused_by_name(name: str) -> None:
    auth = _compose()["services"]["auth"]
    dotenv = {key: value for key, value in SAMPLE_DOTENV.items() if key != name}
    with pytest.raises(AssertionError, match=name):
        _settings_of(auth, dotenv)


def test_the_app_publishes_no_host_port_and_the_proxy_is_the_way_in() -> None:
    compose = _compose()
    services = compose["services"]
    assert "ports" not in services["auth"]  # `--scale auth=N` would clash on a fixed port
    assert "ports" not in services["migrate"]
    assert services["auth"]["expose"] == ["8000"]
    (published,) = services["proxy"]["ports"]
    assert _interpolate(published, {}).startswith("127.0.0.1:")  # loopback unless TLS in front
    # Every service on the one private network, listed plainly: podman-compose 1.0.3 fails
    # on per-network options (such as ipv4_address).
    for service in services.values():
        assert service["networks"] == ["backend"]
    assert ipaddress.ip_network(compose["networks"]["backend"]["ipam"]["config"][0]["subnet"])
    (mount,) = services["proxy"]["volumes"]
    source, target, mode = mount.split(":")
    assert (ROOT / source).is_file()
    assert target.endswith("haproxy.cfg")
    assert mode == "ro"


def test_haproxy_config_balances_over_healthy_replicas_and_sets_forwarded_for() -> None:
    config = (ROOT / "docker" / "haproxy.cfg").read_text()
    lines = [line.split("#")[0].strip() for line in config.splitlines()]
    assert "bind :8000" in lines
    assert "option forwardfor" in lines
    assert "http-request del-header X-Forwarded-For" in lines  # no client-forged hops
    assert "http-check send meth GET uri /healthz" in lines
    assert any(re.fullmatch(r"server-template auth \d+ auth:8000", line) for line in lines)
    assert "parse-resolv-conf" in lines  # replicas found in the engine's DNS


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_its_config() -> None:
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(ROOT / "docker" / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_named_volumes_are_declared_exactly_where_used() -> None:
    compose = _compose()
    used = {
        mount.split(":")[0]
        for service in compose["services"].values()
        for mount in service.get("volumes", [])
        if not mount.startswith((".", "/"))
    }
    assert used == set(compose.get("volumes") or {})


def test_build_secrets_match_the_dockerfile_and_exist() -> None:
    compose = _compose()
    dockerfile = (ROOT / "Dockerfile").read_text()
    mounted = set(re.findall(r"--mount=type=secret,id=(\w+)", dockerfile))
    assert mounted == {"pipconf", "pipcert"}
    for name in AUTH_IMAGE_SERVICES:
        assert set(compose["services"][name]["build"]["secrets"]) == mounted
    for secret in mounted:
        path = ROOT / _interpolate(compose["secrets"][secret]["file"], {})
        assert path.is_file(), path
    # The shipped pip.conf is inert (PyPI): a private index goes into PIP_BUILD_CONF's file.
    pip_conf = (ROOT / "docker" / "pip.conf").read_text()
    assert [line for line in pip_conf.splitlines() if not line.startswith("#")] == ["[global]"]


def test_redis_restarts_empty_and_never_evicts() -> None:
    # A Redis restored from an older snapshot would keep the epoch marker but miss the last
    # revocations; an empty one is rebuilt from PostgreSQL.
    service = _compose()["services"]["redis"]
    redis = " ".join(service["command"])
    assert "--save  --appendonly no" in redis
    assert "--maxmemory-policy noeviction" in redis
    assert "volumes" not in service


def test_the_image_keeps_a_healthcheck_and_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^HEALTHCHECK .*CMD \[\"healthcheck\"\]$", dockerfile, re.MULTILINE)
    assert re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE)
    # HEALTHCHECK is Docker-format metadata: OCI-format builds (podman's default) drop it.
    script = (ROOT / "scripts" / "container-test").read_text()
    assert "--format docker" in script


def test_json_valued_settings_survive_compose_interpolation() -> None:
    value = _compose()["services"]["auth"]["environment"]["AUTH_TRUSTED_PROXIES"]
    assert json.loads(_interpolate(value, SAMPLE_DOTENV)) == ["172.30.57.0/24"]

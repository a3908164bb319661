"""deploy/kubernetes/: valid against the Kubernetes schemas (offline) and consistent with the app.

kubernetes-validate ships the JSON schemas of every Kubernetes release in its wheel; the
checks below block sockets to prove that no schema is fetched from the network.
"""

from __future__ import annotations

import copy
import re
import socket
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from auth_service.config import Settings

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.30.0"  # the oldest release still maintained upstream when written
SERVER_LABELS = {"app.kubernetes.io/name": "auth-service", "app.kubernetes.io/component": "server"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _all_resources() -> list[dict[str, Any]]:
    return [
        doc
        for path in sorted(MANIFESTS.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
    ]


def _one(kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in _all_resources() if doc["kind"] == kind]
    return found


def _container(kind: str) -> dict[str, Any]:
    (container,) = _one(kind)["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = container
    return found


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails the test."""

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_every_manifest_is_valid_against_the_kubernetes_schemas(no_network: None) -> None:
    resources = _all_resources()
    assert {doc["kind"] for doc in resources} == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "Job",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    for doc in resources:
        # strict: unknown fields (typos such as `readinesProbe`) are errors too.
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_rejects_a_broken_manifest(no_network: None) -> None:
    broken = copy.deepcopy(_one("Deployment"))
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomization_applies_everything_but_the_example_secrets() -> None:
    (kustomization,) = _documents(MANIFESTS / "kustomization.yaml")
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - {"secrets.example.yaml"}


def test_probes_use_the_management_port() -> None:
    container = _container("Deployment")
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    settings = _one("ConfigMap")["data"]
    assert ports == {"http": int(settings["AUTH_PORT"]), "management": 9000}
    assert settings["AUTH_MANAGEMENT_PORT"] == "9000"
    probes = {name: container[name]["httpGet"] for name in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"] == {"path": "/healthz", "port": "management"}
    assert probes["readinessProbe"] == {"path": "/readyz", "port": "management"}
    assert container["startupProbe"]["httpGet"]["port"] == "management"
    # The Service publishes the API only.
    (service_port,) = _one("Service")["spec"]["ports"]
    assert service_port["targetPort"] == "http"


def test_settings_from_the_configmap_and_secret_are_accepted_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secrets = [doc for doc in _all_resources() if doc["kind"] == "Secret"]
    (settings_secret,) = [s for s in secrets if "stringData" in s]
    for kind in ("Deployment", "Job"):
        container = _container(kind)
        sources = {
            ref.get("configMapRef", ref.get("secretRef"))["name"] for ref in container["envFrom"]
        }
        assert sources == {
            _one("ConfigMap")["metadata"]["name"],
            settings_secret["metadata"]["name"],
        }
        env = {**_one("ConfigMap")["data"], **settings_secret["stringData"]}
        env |= {item["name"]: item["value"] for item in container.get("env", [])}
        fields = {f"AUTH_{name.upper()}" for name in Settings.model_fields}
        # Read by docker/entrypoint, or by the management-port change (another branch).
        unknown = set(env) - fields - {"AUTH_MIGRATE_ON_START", "AUTH_MANAGEMENT_PORT"}
        assert not unknown, f"not settings of the service: {sorted(unknown)}"
        with monkeypatch.context() as patch:
            for key, value in env.items():
                patch.setenv(key, value)
            settings = Settings(_env_file=None)
        assert settings.environment == "production"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert str(settings.keys_dir) in mounts
        assert settings.data_encryption_key_file is not None
        assert str(settings.data_encryption_key_file.parent) in mounts


def test_the_job_migrates_and_the_replicas_do_not() -> None:
    assert _container("Job")["args"] == ["migrate"]
    assert _one("Job")["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    deployment = _container("Deployment")
    assert deployment["args"] == ["serve"]
    assert {"name": "AUTH_MIGRATE_ON_START", "value": "false"} in deployment["env"]


def test_pods_run_as_the_image_user_without_privileges() -> None:
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert user is not None
    for kind in ("Deployment", "Job"):
        pod = _one(kind)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == int(user.group(1))
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"]["drop"] == ["ALL"]


def test_selectors_match_the_server_pods() -> None:
    deployment = _one("Deployment")
    assert deployment["spec"]["selector"]["matchLabels"] == SERVER_LABELS
    assert SERVER_LABELS.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert _one("Service")["spec"]["selector"] == SERVER_LABELS
    assert _one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"] == SERVER_LABELS
    assert deployment["spec"]["replicas"] > _one("PodDisruptionBudget")["spec"]["minAvailable"]
    # The NetworkPolicy covers the migration Job's pods as well as the servers.
    policy = _one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"]
    assert policy == {"app.kubernetes.io/name": "auth-service"}
    egress_ports = {
        p["port"] for rule in _one("NetworkPolicy")["spec"]["egress"] for p in rule["ports"]
    }
    assert {53, 5432, 6379} <= egress_ports

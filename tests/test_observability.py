"""Request ids, metrics, audit events, and no secret ever in a log line."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from prometheus_client.mmap_dict import MmapedDict

from auth_service.api.management import create_management_app
from auth_service.app import create_app
from auth_service.config import Settings
from auth_service.logs import JsonFormatter, choose_formatter
from auth_service.services.accounts import disable
from auth_service.services.clients import register_client
from auth_service.tracing import load_tracing
from tests.conftest import (
    FLOOR_ARGON2,
    PASSWORD,
    TEST_ISSUER,
    Backend,
    at_the_argon2_floor,
    make_settings,
    register,
)
from tests.processes import argon2_env, running_service, service_env


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    match = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


@pytest.fixture
async def management(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the management app (healthz, readyz, metrics) of the started `app`."""
    transport = httpx.ASGITransport(app=create_management_app(app))
    async with httpx.AsyncClient(transport=transport, base_url="http://management") as http:
        yield http


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "trace-42.a_b:c"})
    assert given.headers["x-request-id"] == "trace-42.a_b:c"
    fresh = await client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    hostile = await client.get("/healthz", headers={"X-Request-ID": 'x"\r\n<script>' + "a" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", hostile.headers["x-request-id"])


async def full_flow(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    """Every audited action once; returns every secret that went over the wire."""
    await register(client, "alice")
    await register(client, "mallory")
    secret = (
        await register_client(
            app.state.services,
            "backend",
            confidential=True,
            grant_types=frozenset({"password"}),
            scopes=frozenset({"profile"}),
            first_party=True,
        )
    ).secret
    assert secret is not None
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    await client.post("/token", data={**form, "password": "wrong password, surely"})
    await client.post("/token", data={**form, "client_id": "backend", "client_secret": secret})
    tokens = (await client.post("/token", data=form)).json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    rotated = (await client.post("/token", data=refresh)).json()
    await client.get("/users/me", headers=bearer)
    new_password = "another long passphrase entirely"
    await client.post(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": new_password},
        headers={"Authorization": f"Bearer {rotated['access_token']}"},
    )
    other = (await client.post("/token", data={**form, "password": new_password})).json()
    await client.post("/revoke", data={"token": other["access_token"]})
    await client.post("/logout", headers={"Authorization": f"Bearer {other['access_token']}"})
    second = (await client.post("/token", data={**form, "password": new_password})).json()
    await client.post("/logout", headers={"Authorization": f"Bearer {second['access_token']}"})
    await asyncio.sleep(0)
    await disable(app.state.services, "mallory")
    return {
        "password": PASSWORD,
        "new password": new_password,
        "client secret": secret,
        **{
            f"token {i}": t
            for i, t in enumerate(
                [
                    tokens["access_token"],
                    tokens["refresh_token"],
                    rotated["access_token"],
                    rotated["refresh_token"],
                    other["access_token"],
                    other["refresh_token"],
                    second["access_token"],
                    second["refresh_token"],
                ]
            )
        },
    }


async def test_metrics_count_http_and_security_events(
    app: FastAPI, client: httpx.AsyncClient, management: httpx.AsyncClient
) -> None:
    await full_flow(app, client)
    # A replayed rotated refresh token, and a revoked bearer: reuse and denylist hit.
    response = await management.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert metric(text, "http_requests_total", method="POST", route="/token", status="200") >= 4
    assert metric(text, "http_requests_total", method="POST", route="/token", status="400") == 1
    assert metric(text, "auth_events_total", event="login", outcome="success") == 4
    assert metric(text, "auth_events_total", event="login", outcome="failure") == 1
    assert metric(text, "auth_events_total", event="refresh", outcome="success") == 1
    assert metric(text, "auth_events_total", event="register", outcome="success") == 2
    assert metric(text, "auth_events_total", event="logout", outcome="success") == 1
    assert metric(text, "auth_events_total", event="revoke", outcome="success") == 1
    assert metric(text, "auth_events_total", event="password_change", outcome="success") == 1
    assert metric(text, "auth_events_total", event="disable", outcome="success") == 1
    assert metric(text, "auth_denylist_hits_total") == 1  # logout with a revoked token
    assert metric(text, "auth_password_hash_seconds_count") >= 8
    assert "auth_password_hash_in_flight 0.0" in text
    assert 'route="/users/me"' in text


@pytest.mark.settings(refresh_reuse_grace_seconds=0)
async def test_reuse_detection_is_audited(
    client: httpx.AsyncClient, management: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await register(client)
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    tokens = (await client.post("/token", data=form)).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    await client.post("/token", data=refresh)
    with caplog.at_level(logging.INFO, logger="auth_service.audit"):
        await client.post("/token", data=refresh)
    events = [
        (r.__dict__["event"], r.__dict__["outcome"]) for r in caplog.records if hasattr(r, "event")
    ]
    assert ("reuse_detected", "session_revoked") in events
    metrics = (await management.get("/metrics")).text
    assert metric(metrics, "auth_events_total", event="reuse_detected", outcome="session_revoked")


async def test_audit_events_carry_user_client_and_address(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="auth_service.audit"):
        await full_flow(app, client)
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "auth_service.audit"]
    audit = [r.__dict__ for r in caplog.records if r.name == "auth_service.audit"]
    events = {(r["event"], r["outcome"]) for r in audit}
    assert {
        ("register", "success"),
        ("login", "success"),
        ("login", "failure"),
        ("refresh", "success"),
        ("password_change", "success"),
        ("revoke", "success"),
        ("logout", "success"),
        ("disable", "success"),
    } <= events
    login = next(line for line in lines if '"event": "login", "outcome": "success"' in line)
    assert '"user_id": "' in login
    assert '"client_id": "' in login
    assert '"client_ip": "127.0.0.1"' in login
    assert '"request_id": "' in login
    failure = next(line for line in lines if '"reason": "bad_credentials"' in line)
    assert "alice" not in failure  # usernames are not needed to audit a failure


async def test_no_secret_ever_appears_in_logs(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        secrets = await full_flow(app, client)
    assert caplog.records, "nothing was logged: the check would prove nothing"
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(record) for record in caplog.records)
    for name, value in secrets.items():
        assert value not in text, f"the {name} was logged"
    assert "$argon2" not in text
    assert "sha256$" not in text


async def test_database_outage_is_503_and_counted(tmp_path: Path) -> None:
    settings = make_settings("postgresql+asyncpg://postgres@127.0.0.1:9/none", tmp_path)
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
            form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
            response = await http.post("/token", data=form)
            assert response.status_code == 503
            assert response.json()["error"] == "temporarily_unavailable"
            assert "retry-after" in response.headers
        transport = httpx.ASGITransport(app=create_management_app(app))
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
            text = (await http.get("/metrics")).text
    assert metric(text, "auth_dependency_errors_total", dependency="database") == 1


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    # At OWASP's floor, so that the logins are still hashing when the signal comes.
    env = service_env(tmp_path, **argon2_env(FLOOR_ARGON2))
    with running_service("graceful", env, tmp_path) as server:

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
                await http.post("/register", json={"username": "alice", "password": PASSWORD})
                form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
                pending = [asyncio.create_task(http.post("/token", data=form)) for _ in range(12)]
                await asyncio.sleep(0.05)  # requests are in flight (argon2 takes a while)
                assert server.process is not None
                server.process.send_signal(signal.SIGTERM)
                return [(await task).status_code for task in pending]

        statuses = asyncio.run(burst())
        assert statuses == [200] * 12, server.output()
        assert server.process is not None
        # uvicorn re-raises the SIGTERM after its graceful shutdown has completed.
        assert server.process.wait(timeout=30) in {0, -signal.SIGTERM}
        assert "Application shutdown complete" in server.output()


# --- the management port -----------------------------------------------------------------


async def test_metrics_and_readiness_are_not_on_the_public_port(
    client: httpx.AsyncClient, management: httpx.AsyncClient
) -> None:
    assert (await client.get("/metrics")).status_code == 404
    assert (await client.get("/readyz")).status_code == 404
    assert (await client.get("/healthz")).status_code == 200  # for load balancers
    assert (await management.get("/metrics")).status_code == 200
    assert (await management.get("/readyz")).status_code == 200
    assert (await management.get("/healthz")).status_code == 200
    assert (await management.post("/token", data={"grant_type": "password"})).status_code == 404


@pytest.mark.settings(docs_enabled=False)
async def test_docs_can_be_switched_off(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 404
    assert (await client.get("/redoc")).status_code == 404


async def test_docs_are_on_by_default(client: httpx.AsyncClient) -> None:
    assert (await client.get("/docs")).status_code == 200


def test_management_port_must_differ_from_the_public_port() -> None:
    with pytest.raises(ValueError, match="AUTH_MANAGEMENT_PORT"):
        Settings(_env_file=None, port=8000, management_port=8000)
    assert Settings(_env_file=None).management_port == 9000


# --- what the metrics say -------------------------------------------------------------------


@pytest.mark.settings(login_max_failures_per_pair=1)
async def test_throttled_logins_count_as_throttled_not_failure(
    client: httpx.AsyncClient, management: httpx.AsyncClient
) -> None:
    await register(client)
    form = {"grant_type": "password", "username": "alice", "password": "wrong password, surely"}
    assert (await client.post("/token", data=form)).status_code == 400
    assert (await client.post("/token", data=form)).status_code == 429
    text = (await management.get("/metrics")).text
    assert metric(text, "auth_events_total", event="login", outcome="failure") == 1
    assert metric(text, "auth_events_total", event="login", outcome="throttled") == 1


async def test_metrics_cover_process_pools_and_grant_types(
    app: FastAPI, client: httpx.AsyncClient, management: httpx.AsyncClient, backend: Backend
) -> None:
    await full_flow(app, client)
    text = (await management.get("/metrics")).text
    assert metric(text, "process_resident_memory_bytes") > 1_000_000
    assert metric(text, "process_open_fds") > 0
    assert metric(text, "process_cpu_seconds_total") > 0
    assert metric(text, "auth_hash_pool_size") == 2
    assert metric(text, "auth_hash_queue_length") == 0
    assert metric(text, "auth_hash_rejections_total") == 0
    assert metric(text, "auth_database_pool_size") >= 1
    assert "auth_database_pool_checked_out " in text
    if backend.redis_url is not None:
        assert metric(text, "auth_redis_roundtrip_seconds_count") >= 1
    assert metric(text, "auth_token_grant_seconds_count", grant_type="password") >= 4
    assert metric(text, "auth_token_grant_seconds_count", grant_type="refresh_token") == 1
    # A login may wait up to AUTH_HASH_WAIT_TIMEOUT_SECONDS (5 s) for the hashing pool.
    for histogram in ("http_request_duration_seconds", "auth_token_grant_seconds"):
        buckets = {float(b) for b in re.findall(histogram + r'_bucket\{.*?le="([^"+]+)"', text)}
        assert max(buckets) > 5.0, (histogram, buckets)


@pytest.mark.settings(hash_pool_size=1, hash_max_waiting=0)
@at_the_argon2_floor
async def test_hash_pool_rejections_are_counted(
    client: httpx.AsyncClient, management: httpx.AsyncClient
) -> None:
    await register(client)
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    responses = await asyncio.gather(*(client.post("/token", data=form) for _ in range(4)))
    refused = sum(r.status_code == 503 for r in responses)
    assert refused >= 1  # one argon2 job at a time, no waiting place
    text = (await management.get("/metrics")).text
    assert metric(text, "auth_hash_rejections_total") == refused


def _worker_counts(directory: Path, name: str, labels: dict[str, str]) -> dict[str, float]:
    """Per worker pid: the value of one counter sample in prometheus-client's mmap files."""
    counts: dict[str, float] = {}
    for path in directory.glob("counter_*.db"):
        pid = path.stem.split("_", 1)[1]
        # prometheus-client leaves this reader unannotated
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
            _, sample, sample_labels, _ = json.loads(key)
            if sample == name and sample_labels == labels:
                counts[pid] = counts.get(pid, 0.0) + value
    return counts


@pytest.mark.slow
def test_two_workers_counts_add_up_in_one_scrape(tmp_path: Path, redis_server_url: str) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"stale file of an earlier run")
    env = service_env(
        tmp_path,
        AUTH_WORKERS="2",
        AUTH_REDIS_URL=redis_server_url,
        AUTH_REDIS_KEY_PREFIX=f"authtest:observe:{secrets.token_hex(4)}:",
        AUTH_HASH_POOL_SIZE="1",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    with running_service("workers", env, tmp_path) as server:
        manage = server.management_url
        assert httpx.get(f"{server.url}/metrics", timeout=5).status_code == 404
        assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 404
        deadline = time.monotonic() + 20
        while len(_worker_counts(metrics_dir, "http_requests_total", labels)) < 2:
            assert time.monotonic() < deadline, "the requests never reached both workers"

            async def probe() -> None:
                async with httpx.AsyncClient(base_url=server.url, timeout=5) as http:
                    assert (await http.get("/healthz")).status_code == 200

            async def burst() -> None:
                async with asyncio.TaskGroup() as group:
                    for _ in range(8):  # a new connection each, at the same time
                        group.create_task(probe())

            asyncio.run(burst())
        per_worker = _worker_counts(metrics_dir, "http_requests_total", labels)
        scrape = httpx.get(f"{manage}/metrics", timeout=5)
        assert scrape.status_code == 200, server.output()
        text = scrape.text
        assert metric(text, "http_requests_total", **labels) == sum(per_worker.values())
        assert all(count > 0 for count in per_worker.values())
        pids = set(re.findall(r'^process_resident_memory_bytes\{pid="(\d+)"\}', text, re.M))
        assert pids == set(per_worker), text
        assert metric(text, "auth_hash_pool_size") == 2  # one thread in each worker
        ready = httpx.get(f"{manage}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
    assert not (metrics_dir / "counter_1.db").exists()


# --- log format -------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.makeLogRecord({"msg": message, "levelname": "INFO", "levelno": 20})
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize(
    ("log_format", "tty", "json_expected"),
    [("auto", True, False), ("auto", False, True), ("json", True, True), ("text", False, False)],
)
def test_log_format_follows_the_terminal_unless_set(
    log_format: str, tty: bool, json_expected: bool
) -> None:
    stream: io.StringIO = _Terminal() if tty else io.StringIO()
    formatter = choose_formatter(log_format, stream)  # type: ignore[arg-type]
    line = formatter.format(_record("Started server", color_message="\x1b[1mStarted\x1b[0m"))
    if json_expected:
        entry = json.loads(line)
        assert entry["message"] == "Started server"
        assert "color_message" not in entry
        assert "\x1b" not in line
    else:
        assert "Started" in line
        assert line.lstrip()[0] != "{"
        assert ("\x1b[" in line) == tty  # colour only on a terminal


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "auth_service", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_migrate_logs_no_alembic_plugin_noise(tmp_path: Path) -> None:
    completed = _cli(service_env(tmp_path), tmp_path, "migrate")
    assert completed.returncode == 0, completed.stderr
    assert "setup plugin" not in completed.stderr
    for line in completed.stderr.splitlines():
        json.loads(line)  # not on a terminal: one JSON record per line


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_failing_migrate_is_one_record_not_a_traceback(log_format: str, tmp_path: Path) -> None:
    # A database stamped with a revision this code does not know: Alembic gives up.
    database = tmp_path / "stamped.db"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        connection.execute("INSERT INTO alembic_version VALUES ('from-the-future')")
    env = service_env(
        tmp_path,
        AUTH_DATABASE_URL=f"sqlite+aiosqlite:///{database}",
        AUTH_LOG_FORMAT=log_format,
    )
    completed = _cli(env, tmp_path, "migrate")
    assert completed.returncode != 0
    lines = completed.stderr.strip().splitlines()
    if log_format == "json":
        records = [json.loads(line) for line in lines]
        failures = [r for r in records if r["level"] in {"ERROR", "CRITICAL"}]
        assert len(failures) == 1, completed.stderr
        assert "Traceback" in failures[0]["exception"]
    else:
        assert "Traceback" not in completed.stderr
        failures = [line for line in lines if "ERROR" in line or "CRITICAL" in line]
        assert len(failures) == 1, completed.stderr
        assert "migrate failed" in failures[0]
        assert "from-the-future" in failures[0]


# --- tracing ----------------------------------------------------------------------------


async def test_tracing_spans_requests_sql_redis_and_argon2(
    settings: Settings, backend: Backend
) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traced = settings.model_copy(update={"otel_enabled": True})
    app = create_app(traced, tracer_provider=provider)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
            await register(http, "tracy")
            form = {"grant_type": "password", "username": "tracy", "password": PASSWORD}
            granted = await http.post("/token", data=form)
            assert granted.status_code == 200
            tokens = granted.json()
            bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
            assert (await http.get("/users/me", headers=bearer)).status_code == 200
            ended = await http.delete("/sessions/not-a-session-of-yours", headers=bearer)
            assert ended.status_code == 404
    spans = exporter.get_finished_spans()
    recorded = " ".join(
        f"{span.name} {dict(span.attributes or {})} {[e.attributes for e in span.events]}"
        for span in spans
    )
    for secret in (PASSWORD, tokens["access_token"], tokens["refresh_token"], "$argon2"):
        assert secret not in recorded
    names = {span.name for span in spans}
    assert "POST /token" in names, names
    assert "DELETE /sessions/{session_id}" in names, names  # the route, not the raw path
    assert not any("not-a-session-of-yours" in name for name in names), names
    assert {"argon2 hash", "argon2 verify"} <= names, names
    systems = {str(span.attributes.get("db.system")) for span in spans if span.attributes}
    assert systems & {"sqlite", "postgresql"}, names
    if backend.redis_url is not None:
        assert "redis" in systems, names
    token_span = next(span for span in spans if span.name == "POST /token")
    verify = next(span for span in spans if span.name == "argon2 verify")
    assert verify.context.trace_id == token_span.context.trace_id  # one trace per request


def test_service_runs_without_opentelemetry_installed(tmp_path: Path) -> None:
    script = f"""
import asyncio, sys
# As if the `otel` extra were not installed (opentelemetry-api comes with FastAPI).
for name in ("sdk", "exporter", "instrumentation"):
    sys.modules["opentelemetry." + name] = None  # every import of it fails
import httpx
from asgi_lifespan import LifespanManager
from auth_service.app import create_app
from auth_service.config import Settings
from auth_service.db.migrate import upgrade_to_head

url = "sqlite+aiosqlite:///{tmp_path}/auth.db"
upgrade_to_head(url)

async def main():
    for enabled in (False, True):
        settings = Settings(_env_file=None, environment="test", database_url=url,
            data_dir="{tmp_path}", password_hash_memory_kib=19456, password_hash_time_cost=2,
            password_hash_parallelism=1, otel_enabled=enabled)
        try:
            app = create_app(settings)
            async with LifespanManager(app):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                             base_url="http://t") as http:
                    print(enabled, (await http.get("/healthz")).status_code)
        except Exception as exc:
            print(enabled, type(exc).__name__, exc)

asyncio.run(main())
"""
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith("AUTH_")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = completed.stdout.splitlines()
    assert lines[0] == "False 200", completed.stdout + completed.stderr
    assert lines[1].startswith("True "), completed.stdout + completed.stderr
    assert "pip install 'auth-service[otel]'" in lines[1]


def test_a_taken_management_port_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = service_env(tmp_path, AUTH_MANAGEMENT_PORT=str(port))
        assert _cli(env, tmp_path, "migrate").returncode == 0
        completed = _cli(env, tmp_path, "serve")
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in completed.stderr
    assert "AUTH_MANAGEMENT_PORT" in completed.stderr


def test_text_logs_keep_tracebacks_except_for_a_failed_command() -> None:
    formatter = choose_formatter("text", io.StringIO())
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        failure = sys.exc_info()
    unexpected = _record("Exception in ASGI application")
    unexpected.exc_info = failure
    assert "Traceback" in formatter.format(unexpected)  # a 500 while developing
    command = _record("auth-service migrate failed", _brief=True)
    command.exc_info = failure
    line = formatter.format(command)
    assert line.endswith("auth-service migrate failed (RuntimeError: boom)"), line


def test_tracing_exports_over_otlp_by_default(tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    settings = make_settings(
        "sqlite+aiosqlite:///unused.db",
        tmp_path,
        otel_enabled=True,
        otel_endpoint="http://127.0.0.1:9/v1/traces",
        otel_service_name="auth-eu-1",
    )
    tracing = load_tracing(settings)
    assert tracing is not None
    processor = tracing.provider._active_span_processor._span_processors[0]
    exporter = processor._batch_processor._exporter
    assert isinstance(exporter, OTLPSpanExporter)
    assert exporter._endpoint == "http://127.0.0.1:9/v1/traces"
    assert tracing.provider.resource.attributes["service.name"] == "auth-eu-1"
    tracing.close()  # nothing was recorded: nothing to send
    assert load_tracing(settings.model_copy(update={"otel_enabled": False})) is None

"""Request ids, metrics, audit events, and no secret ever in a log line."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from auth_service.app import create_app
from auth_service.logs import JsonFormatter
from auth_service.services.accounts import disable
from auth_service.services.clients import register_client
from tests.conftest import PASSWORD, TEST_ISSUER, make_settings, register
from tests.processes import free_port, running_service, service_env


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)"
    match = re.search("^" + pattern + "$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


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
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await full_flow(app, client)
    # A replayed rotated refresh token, and a revoked bearer: reuse and denylist hit.
    response = await client.get("/metrics")
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
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    await register(client)
    form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
    tokens = (await client.post("/token", data=form)).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    await client.post("/token", data=refresh)
    with caplog.at_level(logging.INFO, logger="auth_service.audit"):
        await client.post("/token", data=refresh)
    events = [(r.event, r.outcome) for r in caplog.records if hasattr(r, "event")]
    assert ("reuse_detected", "session_revoked") in events
    metrics = (await client.get("/metrics")).text
    assert metric(metrics, "auth_events_total", event="reuse_detected", outcome="session_revoked")


async def test_audit_events_carry_user_client_and_address(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="auth_service.audit"):
        await full_flow(app, client)
    lines = [JsonFormatter().format(r) for r in caplog.records if r.name == "auth_service.audit"]
    events = {(r.event, r.outcome) for r in caplog.records if r.name == "auth_service.audit"}
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
            text = (await http.get("/metrics")).text
    assert metric(text, "auth_dependency_errors_total", dependency="database") == 1


@pytest.mark.slow
def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    with running_service("graceful", service_env(tmp_path, free_port()), tmp_path) as server:

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

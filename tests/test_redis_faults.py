"""Redis faults against the PostgreSQL backend: flushed, restarted without persistence, down.

Each test starts its own `redis-server` on a free loopback port (never the shared one), so
it may flush, stop and restart it. SQL is the truth: a revoked token stays revoked after
the revocation store lost everything, and while the store is unreachable every endpoint
that needs it fails closed (503 with Retry-After) and recovers by itself when it returns.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from sqlalchemy import bindparam, text

from auth_service.api.management import create_management_app
from auth_service.app import create_app
from tests.conftest import (
    PASSWORD,
    TEST_ISSUER,
    _service_missing,
    direct_sql,
    make_settings,
    password_grant,
    register,
)
from tests.processes import free_port

pytestmark = pytest.mark.slow

PREFIX = "faulttest:"
START_TIMEOUT_SECONDS = 5.0
RECOVERY_TIMEOUT_SECONDS = 5.0


def redis_command(port: int, *words: str, timeout: float = 1.0) -> bytes:
    """Send one inline command to 127.0.0.1:port and return the first reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(" ".join(words).encode() + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.strip()


class RedisProcess:
    """One redis-server without persistence, owned by this test (stopped by its PID)."""

    def __init__(self, executable: str, port: int, directory: Path) -> None:
        self.executable = executable
        self.port = port
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "redis-server is already running"
        self.starts += 1
        log_path = self.directory / f"redis-{self.starts}.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    self.executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.directory),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                output = log_path.read_text(errors="replace")
                self.process = None
                pytest.fail(f"redis-server exited at start:\n{output}")
            try:
                if redis_command(self.port, "PING", timeout=0.5) == b"+PONG":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"redis-server on port {self.port} did not answer PING in time")
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def flushall(self) -> None:
        assert redis_command(self.port, "FLUSHALL") == b"+OK"

    def exists(self, key: str) -> bool:
        return redis_command(self.port, "EXISTS", key) == b":1"


@pytest.fixture
def redis_process(tmp_path: Path) -> Iterator[RedisProcess]:
    executable = shutil.which("redis-server")
    if executable is None:
        _service_missing("redis-server", FileNotFoundError("redis-server is not on PATH"))
        raise AssertionError("unreachable")  # _service_missing skips or fails
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisProcess(executable, free_port(), directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass
class Service:
    """The app under test, its client, its private Redis, and what the test created."""

    app: FastAPI
    client: httpx.AsyncClient
    redis: RedisProcess
    user_ids: list[str] = field(default_factory=list)
    token_ids: list[str] = field(default_factory=list)

    async def ready(self) -> httpx.Response:
        """GET /readyz of the management app."""
        transport = httpx.ASGITransport(app=create_management_app(self.app))
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
            return await http.get("/readyz")

    async def new_user(self, name: str) -> str:
        body = await register(self.client, name)
        self.user_ids.append(body["id"])
        return name

    async def login(self, username: str) -> dict[str, Any]:
        response = await password_grant(self.client, username)
        assert response.status_code == 200, response.text
        grant: dict[str, Any] = response.json()
        self.token_ids.append(claims(grant["access_token"])["jti"])
        return grant

    async def refresh(self, refresh_token: str) -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        response = await self.client.post("/token", data=form)
        if response.status_code == 200:
            self.token_ids.append(claims(response.json()["access_token"])["jti"])
        return response

    async def me(self, access_token: str) -> httpx.Response:
        return await self.client.get(
            "/users/me", headers={"Authorization": f"Bearer {access_token}"}
        )

    async def logout(self, access_token: str) -> httpx.Response:
        return await self.client.post(
            "/logout", headers={"Authorization": f"Bearer {access_token}"}
        )


def claims(token: str) -> dict[str, Any]:
    """The unverified payload of a JWT (only to learn its jti and sid)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def unique_name() -> str:
    return f"fault-{secrets.token_hex(6)}"


@pytest.fixture
async def service(
    postgres_url: str, redis_process: RedisProcess, tmp_path: Path
) -> AsyncIterator[Service]:
    settings = make_settings(
        postgres_url,
        tmp_path,
        redis_url=redis_process.url,
        redis_key_prefix=PREFIX,
        refresh_reuse_grace_seconds=0,
    )
    app = create_app(settings)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            created = Service(app, client, redis_process)
            try:
                yield created
            finally:
                await _delete_rows(app, created)


async def _delete_rows(app: FastAPI, created: Service) -> None:
    async with direct_sql(app) as connection:
        if created.token_ids:
            await connection.execute(
                text("DELETE FROM revoked_access_tokens WHERE jti IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": created.token_ids},
            )
        if created.user_ids:
            users = {"ids": created.user_ids}
            sessions = "SELECT id FROM sessions WHERE user_id IN :ids"
            for statement in (
                f"DELETE FROM refresh_tokens WHERE session_id IN ({sessions})",
                "DELETE FROM sessions WHERE user_id IN :ids",
                "DELETE FROM users WHERE id IN :ids",
            ):
                await connection.execute(
                    text(statement).bindparams(bindparam("ids", expanding=True)), users
                )


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_grant"


def assert_unavailable(response: httpx.Response) -> None:
    """Fail closed: 503 temporarily_unavailable with Retry-After (never 200, never 500)."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "temporarily_unavailable"
    assert int(response.headers["retry-after"]) >= 1


@pytest.mark.parametrize("wipe", ["flushall", "restart"])
async def test_revocations_survive_losing_every_redis_key(service: Service, wipe: str) -> None:
    username = await service.new_user(unique_name())
    first = await service.login(username)
    second = await service.login(username)
    # Rotate the second session's refresh token once while Redis still has everything.
    rotated = await service.refresh(second["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    newest = rotated.json()
    assert newest["refresh_token"] != second["refresh_token"]

    assert (await service.logout(first["access_token"])).status_code == 204
    assert (await service.me(first["access_token"])).status_code == 401
    assert (await service.me(second["access_token"])).status_code == 200
    assert (await service.me(newest["access_token"])).status_code == 200
    first_sid = claims(first["access_token"])["sid"]
    assert service.redis.exists(f"{PREFIX}epoch")
    assert service.redis.exists(f"{PREFIX}revoked-session:{first_sid}")

    if wipe == "flushall":
        service.redis.flushall()
    else:
        service.redis.restart()
    assert not service.redis.exists(f"{PREFIX}epoch")
    assert not service.redis.exists(f"{PREFIX}revoked-session:{first_sid}")

    # The revocation comes back from SQL; the live session is untouched.
    revoked = await service.me(first["access_token"])
    assert revoked.status_code == 401, revoked.text
    assert 'error="invalid_token"' in revoked.headers["www-authenticate"]
    assert service.redis.exists(f"{PREFIX}epoch")
    assert service.redis.exists(f"{PREFIX}revoked-session:{first_sid}")
    assert (await service.me(second["access_token"])).status_code == 200
    assert (await service.me(newest["access_token"])).status_code == 200

    # Refresh state lives in SQL: the logged-out session cannot be refreshed...
    assert_invalid_grant(await service.refresh(first["refresh_token"]))
    # ...and replaying the refresh token rotated before the wipe is still theft: the
    # whole second session dies, including the access token issued by the rotation.
    assert_invalid_grant(await service.refresh(second["refresh_token"]))
    assert (await service.me(newest["access_token"])).status_code == 401
    assert (await service.me(second["access_token"])).status_code == 401
    assert_invalid_grant(await service.refresh(newest["refresh_token"]))


async def test_redis_down_fails_closed_and_recovers_by_itself(
    service: Service,
) -> None:
    username = await service.new_user(unique_name())
    grant = await service.login(username)
    token = grant["access_token"]
    assert (await service.me(token)).status_code == 200
    assert (await service.ready()).status_code == 200

    service.redis.stop()

    assert_unavailable(await service.me(token))
    ready = await service.ready()
    assert ready.status_code == 503, ready.text
    assert ready.json()["checks"] == {
        "database": "ok",
        "schema": "ok",
        "revocation_store": "unavailable",
    }
    assert_unavailable(await service.logout(token))
    # Still refused, not trusted, on a second try while Redis stays down.
    assert_unavailable(await service.me(token))

    service.redis.start()  # same port, empty: the app must reconnect and reseed

    deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
    statuses: list[int] = []
    while True:
        response = await service.me(token)
        statuses.append(response.status_code)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        assert response.status_code == 503, response.text
        await asyncio.sleep(0.1)
    assert statuses[-1] == 200, f"/users/me never recovered: {statuses}"
    assert response.json()["username"] == username
    ready = await service.ready()
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "schema": "ok", "revocation_store": "ok"}

    # Writes work again too: a logout now takes effect.
    assert (await service.logout(token)).status_code == 204
    assert (await service.me(token)).status_code == 401
    assert_invalid_grant(await service.refresh(grant["refresh_token"]))


async def _until_recovered(request: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """Repeat `request` while it answers 503 (the app reconnecting), within the timeout."""
    deadline = time.monotonic() + RECOVERY_TIMEOUT_SECONDS
    while True:
        response = await request()
        if response.status_code != 503 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.1)


async def test_reuse_detected_during_an_outage_is_recorded_in_sql(service: Service) -> None:
    username = await service.new_user(unique_name())
    victim = await service.login(username)
    rotated = await service.refresh(victim["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    thief = rotated.json()

    service.redis.stop()
    # A replay past the grace window (0 here) is theft, recorded although Redis is down.
    assert_invalid_grant(await service.refresh(victim["refresh_token"]))
    service.redis.start()

    # After recovery the thief's family is dead: its refresh token and its access token.
    assert_invalid_grant(await service.refresh(thief["refresh_token"]))
    me = await _until_recovered(lambda: service.me(thief["access_token"]))
    assert me.status_code == 401, me.text


async def test_password_change_is_all_or_nothing_when_redis_fails(service: Service) -> None:
    username = await service.new_user(unique_name())
    owner = await service.login(username)
    attacker = await service.login(username)
    body = {"current_password": PASSWORD, "new_password": "a completely different passphrase"}
    headers = {"Authorization": f"Bearer {owner['access_token']}"}
    hasher = service.app.state.services.hasher
    real_hash = hasher.hash

    async def hash_then_lose_redis(password: str) -> str:
        hashed: str = await real_hash(password)
        service.redis.stop()  # mid-change: after the bearer check and the current password
        return hashed

    hasher.hash = hash_then_lose_redis
    try:
        failed = await service.client.post("/users/me/password", json=body, headers=headers)
    finally:
        del hasher.hash
    assert_unavailable(failed)
    service.redis.start()

    retried = await _until_recovered(
        lambda: service.client.post("/users/me/password", json=body, headers=headers)
    )
    assert retried.status_code == 204, retried.text
    assert (await service.me(attacker["access_token"])).status_code == 401
    assert_invalid_grant(await service.refresh(attacker["refresh_token"]))
    assert_invalid_grant(await password_grant(service.client, username))

"""`auth-service users mfa-reset` and `users purge-deleted` from the command line."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from auth_service.app import create_app
from auth_service.cli import main
from tests.conftest import TEST_ISSUER, FakeClock, make_settings, password_grant
from tests.mfa_helpers import code_at, confirm, login, start


async def test_mfa_reset_removes_the_factor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AUTH_ENVIRONMENT", "test")
    monkeypatch.setenv("AUTH_NEW_USER_PASSWORD", "correct horse battery staple")
    url = f"sqlite+aiosqlite:///{(tmp_path / 'auth.db').resolve()}"
    settings = make_settings(url, tmp_path)  # first: it seeds the run's RS256 key
    assert await asyncio.to_thread(main, ["migrate"]) == 0
    assert await asyncio.to_thread(main, ["create-user", "alice"]) == 0
    clock = FakeClock()
    app = create_app(settings, clock=clock)
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=60):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            tokens = await login(client)
            secret = (await start(client, tokens["access_token"])).json()["secret"]
            assert (
                await confirm(client, tokens["access_token"], code_at(secret, clock()))
            ).status_code == 200
            assert (await password_grant(client)).json()["error"] == "mfa_required"
            capsys.readouterr()
            assert await asyncio.to_thread(main, ["users", "mfa-reset", "alice"]) == 0
            assert "TOTP factor and recovery codes removed" in capsys.readouterr().out
            assert (await password_grant(client)).status_code == 200
    assert await asyncio.to_thread(main, ["users", "mfa-reset", "alice"]) == 0
    assert "nothing to reset" in capsys.readouterr().out
    assert await asyncio.to_thread(main, ["users", "mfa-reset", "nobody"]) == 1
    assert await asyncio.to_thread(main, ["users", "purge-deleted"]) == 0
    assert "purged 0" in capsys.readouterr().out

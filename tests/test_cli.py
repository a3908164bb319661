"""The `auth-service` command line: migrate, create-user, users disable, refusing bad settings."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from auth_service.app import create_app
from auth_service.cli import main
from tests.conftest import PASSWORD, TEST_ISSUER, make_settings


async def test_migrate_then_create_user_then_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AUTH_ENVIRONMENT", "test")
    monkeypatch.setenv("AUTH_NEW_USER_PASSWORD", PASSWORD)
    # Both commands run their own event loop, as they do from a shell.
    assert await asyncio.to_thread(main, ["migrate"]) == 0
    assert await asyncio.to_thread(main, ["create-user", "Operator"]) == 0
    assert '"username": "Operator"' in capsys.readouterr().out

    url = f"sqlite+aiosqlite:///{(tmp_path / 'auth.db').resolve()}"
    app = create_app(make_settings(url, tmp_path))
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            form = {"grant_type": "password", "username": "operator", "password": PASSWORD}
            tokens = (await client.post("/token", data=form)).json()
            bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
            assert (await client.get("/users/me", headers=bearer)).status_code == 200

            assert await asyncio.to_thread(main, ["users", "disable", "OPERATOR"]) == 0
            assert "disabled OPERATOR" in capsys.readouterr().out
            assert (await client.get("/users/me", headers=bearer)).status_code == 401
            # Every bearer endpoint: the in-process store reseeded on the CLI's announcement.
            assert (await client.get("/sessions", headers=bearer)).status_code == 401
            assert (await client.post("/logout", headers=bearer)).status_code == 401
            assert (await client.post("/token", data=form)).json()["error"] == "invalid_grant"
            refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
            assert (await client.post("/token", data=refresh)).json()["error"] == "invalid_grant"
            assert await asyncio.to_thread(main, ["users", "disable", "nobody-here"]) == 1


def test_create_user_reports_policy_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AUTH_NEW_USER_PASSWORD", "short")
    assert main(["migrate"]) == 0
    assert main(["create-user", "someone"]) == 1
    assert "password must be at least 15 characters" in capsys.readouterr().err


def test_production_without_keys_or_redis_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_ENVIRONMENT", "production")
    with pytest.raises(SystemExit) as exited:
        main(["serve"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "configuration refused" in err
    assert "AUTH_SIGNING_KEY_FILE" in err
    assert "AUTH_REDIS_URL" in err
    assert "AUTH_DATABASE_URL" in err


def test_clients_add_list_remove_and_user_scopes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AUTH_NEW_USER_PASSWORD", PASSWORD)
    assert main(["migrate"]) == 0
    assert main(["clients", "add", "backend", "--confidential", "--scopes", "profile"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["client_id"] == "backend"
    assert len(added["client_secret"]) >= 43
    assert main(["clients", "add", "mobile", "--grants", "password"]) == 0
    assert "client_secret" not in json.loads(capsys.readouterr().out)
    assert main(["clients", "add", "rs", "--confidential", "--grants", "--introspection"]) == 0
    capsys.readouterr()
    assert main(["clients", "add", "app", "--introspection"]) == 1
    assert "confidential" in capsys.readouterr().err
    assert main(["clients", "add", "backend"]) == 1
    assert "already registered" in capsys.readouterr().err

    assert main(["clients", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing == [
        "backend\tconfidential\tpassword,refresh_token\tprofile",
        "mobile\tpublic\tpassword\tprofile",
        "rs\tconfidential\tintrospection\tprofile",
    ]
    assert added["client_secret"] not in "\n".join(listing)
    assert main(["clients", "remove", "mobile"]) == 0
    assert main(["clients", "remove", "mobile"]) == 1

    assert main(["create-user", "root-user"]) == 0
    assert main(["users", "set-scopes", "root-user", "profile", "admin"]) == 0
    assert "admin profile" in capsys.readouterr().out
    assert main(["users", "set-scopes", "root-user", "superpowers"]) == 1
    assert "unknown scopes: superpowers" in capsys.readouterr().err

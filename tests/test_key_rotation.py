"""Key rotation: next key published before it signs, old key kept until its tokens expire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from jose import jwt
from sqlalchemy import text

from auth_service.app import create_app
from auth_service.cli import main
from auth_service.config import Settings
from auth_service.security.keyring import KeyDirectory
from auth_service.security.keys import KeyConfigurationError
from tests.conftest import (
    TEST_ISSUER,
    FakeClock,
    direct_sql,
    make_settings,
    password_grant,
    register,
)

PUBLISHED_FOR = timedelta(seconds=300)
TOKENS_LIVE_FOR = timedelta(seconds=910)


def states(directory: KeyDirectory, algorithm: str | None = None) -> list[str]:
    return [r.state for r in directory.records() if algorithm in (None, r.algorithm)]


def test_first_key_is_active_then_next(tmp_path: Path, clock: FakeClock) -> None:
    directory = KeyDirectory(tmp_path / "keys", clock)
    first = directory.generate("ES256")
    second = directory.generate("ES256")
    assert (first.state, second.state) == ("active", "next")
    ring = directory.load()
    assert ring.active.kid == first.kid
    assert {key.kid for key in ring.published} == {first.kid, second.kid}
    for name in (f"{first.kid}.pem", f"{second.kid}.pem"):
        assert (tmp_path / "keys" / name).stat().st_mode & 0o777 == 0o600


def test_rotation_waits_until_the_next_key_was_published_long_enough(
    tmp_path: Path, clock: FakeClock
) -> None:
    directory = KeyDirectory(tmp_path, clock)
    old = directory.generate("ES256")
    upcoming = directory.generate("ES256")
    with pytest.raises(KeyConfigurationError, match="published 0 s ago"):
        directory.rotate("ES256", published_for=PUBLISHED_FOR, tokens_live_for=TOKENS_LIVE_FOR)
    assert states(directory) == ["active", "next"]

    clock.advance(300)
    promoted = directory.rotate(
        "ES256", published_for=PUBLISHED_FOR, tokens_live_for=TOKENS_LIVE_FOR
    )
    assert promoted.kid == upcoming.kid
    records = {r.kid: r for r in directory.records()}
    assert records[old.kid].state == "retiring"
    assert records[upcoming.kid].state == "active"
    assert states(directory).count("next") == 1  # the following key is already published
    assert directory.load().active.kid == upcoming.kid


def test_retire_only_after_the_old_tokens_expired(tmp_path: Path, clock: FakeClock) -> None:
    directory = KeyDirectory(tmp_path, clock)
    old = directory.generate("ES256")
    directory.generate("ES256")
    directory.rotate(
        "ES256", published_for=PUBLISHED_FOR, tokens_live_for=TOKENS_LIVE_FOR, force=True
    )
    assert directory.retire() == []
    clock.advance(TOKENS_LIVE_FOR.total_seconds())
    assert directory.retire() == [old.kid]
    assert not (tmp_path / f"{old.kid}.pem").exists()
    assert old.kid not in {key.kid for key in directory.load().published}


def test_a_directory_without_an_active_key_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    directory = KeyDirectory(tmp_path, clock)
    with pytest.raises(KeyConfigurationError, match="exactly one active key"):
        directory.load()


def test_keys_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_KEYS_DIR", str(tmp_path))
    assert main(["keys", "generate"]) == 0
    assert main(["keys", "generate"]) == 0
    assert main(["keys", "rotate"]) == 1
    assert "verifiers may cache the JWKS for 300 s" in capsys.readouterr().err
    assert main(["keys", "rotate", "--force"]) == 0
    assert main(["keys", "list"]) == 0
    listing = [line.split("\t") for line in capsys.readouterr().out.splitlines()[-3:]]
    assert [row[2] for row in listing] == ["retiring", "active", "next"]
    assert main(["keys", "retire"]) == 0
    assert main(["keys", "retire", f"--kid={listing[0][0]}", "--force"]) == 0
    assert f"{listing[0][0]}\tretired" in capsys.readouterr().out
    monkeypatch.delenv("AUTH_KEYS_DIR")
    with pytest.raises(SystemExit):
        main(["keys", "list"])


@pytest.fixture
async def rotating_app(
    sqlite_url: str, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[tuple[FastAPI, Settings]]:
    settings = make_settings(
        sqlite_url, tmp_path, keys_dir=tmp_path / "keyset", key_poll_interval_seconds=1
    )
    app = create_app(settings, clock=clock)
    async with LifespanManager(app):
        yield app, settings
        async with direct_sql(app) as connection:
            for table in ("refresh_tokens", "sessions", "users"):
                await connection.execute(text(f"DELETE FROM {table}"))


async def wait_for_jwks(http: httpx.AsyncClient, want: set[str]) -> dict[str, Any]:
    for _ in range(60):
        jwks: dict[str, Any] = (await http.get("/.well-known/jwks.json")).json()
        if {key["kid"] for key in jwks["keys"]} == want:
            return jwks
        await asyncio.sleep(0.1)
    raise AssertionError(f"JWKS never became {want}")


async def test_live_rotation_without_restart(
    rotating_app: tuple[FastAPI, Settings], clock: FakeClock
) -> None:
    app, settings = rotating_app
    assert settings.keys_dir is not None
    directory = KeyDirectory(settings.keys_dir, clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
        await register(http)
        # Created on first start: the access-token key and the ID tokens' RS256 key.
        (first,) = [r for r in directory.records() if r.algorithm == "ES256"]
        (id_key,) = [r for r in directory.records() if r.algorithm == "RS256"]
        before = (await password_grant(http)).json()["access_token"]
        assert jwt.get_unverified_header(before)["kid"] == first.kid

        upcoming = directory.generate("ES256")
        # Published before it signs: new tokens still come from the first key.
        await wait_for_jwks(http, {first.kid, upcoming.kid, id_key.kid})
        still_old = (await password_grant(http)).json()["access_token"]
        assert jwt.get_unverified_header(still_old)["kid"] == first.kid

        clock.advance(settings.jwks_max_age_seconds)
        directory.rotate("ES256", published_for=PUBLISHED_FOR, tokens_live_for=TOKENS_LIVE_FOR)
        following = next(r.kid for r in directory.records() if r.state == "next")
        await wait_for_jwks(http, {first.kid, upcoming.kid, following, id_key.kid})
        after = (await password_grant(http)).json()["access_token"]
        assert jwt.get_unverified_header(after)["kid"] == upcoming.kid

        bearer = {"Authorization": f"Bearer {before}"}
        assert (await http.get("/users/me", headers=bearer)).status_code == 200

        directory.retire(kid=first.kid, force=True)
        await wait_for_jwks(http, {upcoming.kid, following, id_key.kid})
        assert (await http.get("/users/me", headers=bearer)).status_code == 401
        new_bearer = {"Authorization": f"Bearer {after}"}
        assert (await http.get("/users/me", headers=new_bearer)).status_code == 200


async def test_scheduled_rotation(sqlite_url: str, tmp_path: Path, clock: FakeClock) -> None:
    settings = make_settings(
        sqlite_url,
        tmp_path,
        keys_dir=tmp_path / "keyset",
        key_poll_interval_seconds=1,
        key_rotation_interval_seconds=3600,
    )
    app = create_app(settings, clock=clock)
    directory = KeyDirectory(tmp_path / "keyset", clock)
    async with LifespanManager(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as http:
            # Each algorithm rotates on its own: ES256 (access tokens), RS256 (ID tokens).
            (first,) = [r for r in directory.records() if r.algorithm == "ES256"]
            for _ in range(100):  # one round publishes a next key of each (RSA is slow)
                if len(directory.records()) == 4:
                    break
                await asyncio.sleep(0.1)
            assert states(directory, "ES256") == ["active", "next"]
            assert states(directory, "RS256") == ["active", "next"]
            clock.advance(3600)
            for _ in range(100):
                if len(states(directory, "RS256")) == 3 and len(states(directory, "ES256")) == 3:
                    break
                await asyncio.sleep(0.1)
            assert states(directory, "ES256") == ["retiring", "active", "next"]
            assert states(directory, "RS256") == ["retiring", "active", "next"]
            kids = {r.kid for r in directory.records()}
            await wait_for_jwks(http, kids)
    assert first.kid in kids

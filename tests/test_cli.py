"""The `auth-service` command line: migrate, create-user, users disable, refusing bad settings."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from auth_service.app import create_app
from auth_service.cli import main
from auth_service.security.keys import generate_private_key_pem, load_signing_key
from tests.conftest import PASSWORD, TEST_ISSUER, make_settings, password_grant, register


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
    assert main(["clients", "add", "third", "--confidential", "--grants", "password"]) == 1
    assert "first-party" in capsys.readouterr().err
    backend = ["clients", "add", "backend", "--confidential", "--first-party"]
    assert main([*backend, "--scopes", "profile"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["client_id"] == "backend"
    assert len(added["client_secret"]) >= 43
    assert main(["clients", "add", "mobile", "--grants", "password", "--first-party"]) == 0
    assert "client_secret" not in json.loads(capsys.readouterr().out)
    assert main(["clients", "add", "rs", "--confidential", "--grants", "--introspection"]) == 0
    capsys.readouterr()
    assert main(["clients", "add", "app", "--introspection"]) == 1
    assert "confidential" in capsys.readouterr().err
    assert main(["clients", "add", "backend", "--first-party"]) == 1
    assert "already registered" in capsys.readouterr().err

    assert main(["clients", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing == [
        "public\tpublic\tpassword,refresh_token\tadmin email openid profile"
        "\tfirst-party\tpkce\t(default)",
        "backend\tconfidential\tpassword,refresh_token\tprofile\tfirst-party",
        "mobile\tpublic\tpassword\tprofile\tfirst-party\tpkce",
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


def test_clients_add_an_openid_relying_party(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    assert main(["migrate"]) == 0
    capsys.readouterr()
    command = ["clients", "add", "grafana", "--confidential", "--grants", "authorization_code"]
    command += ["refresh_token", "--redirect-uris", "https://grafana.example/login/generic_oauth"]
    command += ["http://127.0.0.1/cb", "--post-logout-redirect-uris", "https://grafana.example/"]
    command += ["--scopes", "openid", "profile", "email", "--first-party", "--require-pkce"]
    assert main([*command, "--id-token-alg", "ES256"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert len(added.pop("client_secret")) >= 43
    assert added == {
        "client_id": "grafana",
        "confidential": True,
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["email", "openid", "profile"],
        "redirect_uris": ["https://grafana.example/login/generic_oauth", "http://127.0.0.1/cb"],
        "post_logout_redirect_uris": ["https://grafana.example/"],
        "first_party": True,
        "require_pkce": True,
        "id_token_signed_response_alg": "ES256",
        "introspection": False,
        "jwks_kids": [],
    }
    spa = ["clients", "add", "spa", "--grants", "authorization_code", "--scopes", "openid"]
    assert main([*spa, "--redirect-uris", "https://spa.example/cb"]) == 0
    public = json.loads(capsys.readouterr().out)
    assert "client_secret" not in public
    assert public["require_pkce"] is True  # forced for a public client
    assert main([*spa[:2], "nocb", *spa[3:]]) == 1
    assert "redirect URI" in capsys.readouterr().err
    assert main([*spa[:2], "frag", *spa[3:], "--redirect-uris", "https://x.example/#a"]) == 1
    assert "fragment" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main([*spa[:2], "bad-alg", *spa[3:], "--id-token-alg", "HS256"])
    assert refused.value.code == 2
    assert "invalid choice: 'HS256'" in capsys.readouterr().err

    assert main(["clients", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[1:] == [
        "grafana\tconfidential\tauthorization_code,refresh_token\temail openid profile"
        "\tfirst-party\tpkce\tid_token=ES256"
        "\tredirect_uris=https://grafana.example/login/generic_oauth http://127.0.0.1/cb"
        "\tpost_logout=https://grafana.example/",
        "spa\tpublic\tauthorization_code\topenid\tpkce\tredirect_uris=https://spa.example/cb",
    ]
    assert main(["clients", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [c["client_id"] for c in listed] == ["public", "grafana", "spa"]
    assert listed[1] == added


def test_clients_add_a_private_key_jwt_client_from_a_pem_or_a_jwks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from joserfc.jwk import ECKey, RSAKey

    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    assert main(["migrate"]) == 0
    capsys.readouterr()
    ec = ECKey.generate_key("P-256", private=True)
    pem = tmp_path / "client.pub.pem"
    pem.write_bytes(ec.as_pem(private=False))
    base = ["clients", "add", "svc", "--grants", "client_credentials", "--scopes", "profile"]
    assert main([*base, "--public-key-file", str(pem)]) == 0
    added = json.loads(capsys.readouterr().out)
    assert "client_secret" not in added
    assert added["confidential"] is True
    assert added["token_endpoint_auth_method"] == "private_key_jwt"
    assert added["jwks_kids"] == [ec.thumbprint()]

    rsa = RSAKey.generate_key(2048, private=True)
    jwks = tmp_path / "client.jwks.json"
    jwks.write_text(json.dumps({"keys": [rsa.as_dict(private=False, kid="k1")]}))
    assert main([*base[:2], "svc2", *base[3:], "--jwks-file", str(jwks)]) == 0
    assert json.loads(capsys.readouterr().out)["jwks_kids"] == ["k1"]

    private = tmp_path / "client.pem"
    private.write_bytes(ec.as_pem(private=True))
    assert main([*base[:2], "svc3", *base[3:], "--public-key-file", str(private)]) == 1
    assert "private key" in capsys.readouterr().err
    assert main([*base[:2], "svc4", *base[3:], "--jwks-file", str(tmp_path / "none")]) == 1
    assert "cannot use the key file" in capsys.readouterr().err
    assert main(["clients", "list"]) == 0
    assert "svc\tconfidential\tclient_credentials\tprofile\tprivate_key_jwt" in (
        capsys.readouterr().out
    )


def test_clients_disable_enable_rotate_secret_and_set_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from joserfc.jwk import ECKey

    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    assert main(["migrate"]) == 0
    base = ["clients", "add", "svc", "--confidential", "--grants", "client_credentials"]
    assert main(base) == 0
    first = json.loads(capsys.readouterr().out)["client_secret"]
    assert main(["clients", "rotate-secret", "svc"]) == 0
    rotated = json.loads(capsys.readouterr().out)
    assert rotated["client_id"] == "svc"
    assert len(rotated["client_secret"]) >= 43
    assert rotated["client_secret"] != first
    assert main(["clients", "disable", "svc"]) == 0
    assert "revoked" in capsys.readouterr().out
    assert main(["clients", "enable", "svc"]) == 0
    capsys.readouterr()
    for command in ("disable", "enable", "rotate-secret", "remove"):
        assert main(["clients", command, "nobody"]) == 1
        assert "no client 'nobody'" in capsys.readouterr().err

    key = tmp_path / "k.pem"
    key.write_bytes(ECKey.generate_key("P-256", private=True).as_pem(private=False))
    assert main(["clients", "set-keys", "svc", "--public-key-file", str(key)]) == 1
    assert "only a private_key_jwt client" in capsys.readouterr().err
    jwt_client = ["clients", "add", "jwt-svc", "--grants", "client_credentials"]
    assert main([*jwt_client, "--public-key-file", str(key)]) == 0
    capsys.readouterr()
    assert main(["clients", "rotate-secret", "jwt-svc"]) == 1
    assert "only a client authenticating by secret" in capsys.readouterr().err
    new_key = ECKey.generate_key("P-256", private=True)
    key.write_bytes(new_key.as_pem(private=False))
    assert main(["clients", "set-keys", "jwt-svc", "--public-key-file", str(key)]) == 0
    capsys.readouterr()
    assert main(["clients", "list", "--json"]) == 0
    listed = {c["client_id"]: c for c in json.loads(capsys.readouterr().out)}
    assert listed["jwt-svc"]["jwks_kids"] == [new_key.thumbprint()]


def test_clients_list_omits_a_switched_off_default_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AUTH_DEFAULT_CLIENT_ENABLED", "false")
    assert main(["migrate"]) == 0
    capsys.readouterr()
    assert main(["clients", "list"]) == 0
    assert capsys.readouterr().out == ""


def test_the_default_client_id_cannot_be_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    assert main(["migrate"]) == 0
    assert main(["clients", "add", "public", "--confidential"]) == 1
    assert "reserved for the default public client" in capsys.readouterr().err


def _age_disable(database: Path, username: str) -> None:
    """Move a user's disable far into the past, as if its tokens had long expired."""
    with sqlite3.connect(database) as connection:
        connection.execute(
            "UPDATE users SET tokens_valid_after = '2000-01-01 00:00:00.000000' WHERE username = ?",
            (username,),
        )


def test_users_list_show_enable_and_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("AUTH_NEW_USER_PASSWORD", PASSWORD)
    assert main(["migrate"]) == 0
    for name in ("bob", "Alice"):
        assert main(["create-user", name]) == 0
    capsys.readouterr()

    assert main(["users", "list"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [row[:3] for row in rows] == [
        ["Alice", "active", "profile"],
        ["bob", "active", "profile"],
    ]
    assert main(["users", "disable", "bob"]) == 0
    capsys.readouterr()
    assert main(["users", "list", "--disabled"]) == 0
    assert [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()] == ["bob"]

    assert main(["users", "show", "BOB"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["username"], shown["active"], shown["open_sessions"]) == ("bob", False, 0)
    assert shown["disabled_at"] is not None
    assert "password" not in json.dumps(shown)

    assert main(["users", "enable", "bob"]) == 0
    assert "enabled bob" in capsys.readouterr().out
    assert main(["users", "delete", "bob"]) == 1
    assert "disable the user first" in capsys.readouterr().err
    assert main(["users", "disable", "bob"]) == 0
    assert main(["users", "delete", "bob"]) == 1
    assert "may live" in capsys.readouterr().err
    _age_disable(tmp_path / "auth.db", "bob")
    assert main(["users", "delete", "bob"]) == 0
    assert "deleted bob" in capsys.readouterr().out
    assert main(["users", "show", "bob"]) == 1
    for command in ("show", "enable", "delete"):
        assert main(["users", command, "nobody-here"]) == 1
        assert "no user named 'nobody-here'" in capsys.readouterr().err


async def test_keys_import_moves_a_key_file_into_a_key_directory_keeping_live_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pem_file = tmp_path / "signing.pem"
    pem_file.write_bytes(generate_private_key_pem("ES256"))
    kid = load_signing_key(pem_file.read_bytes(), "ES256").kid
    url = f"sqlite+aiosqlite:///{(tmp_path / 'auth.db').resolve()}"
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    assert await asyncio.to_thread(main, ["migrate"]) == 0

    with_file = create_app(make_settings(url, tmp_path, signing_key_file=pem_file))
    async with LifespanManager(with_file):
        transport = httpx.ASGITransport(app=with_file)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            await register(client)
            token = (await password_grant(client)).json()["access_token"]

    keys = tmp_path / "keys-dir"
    monkeypatch.setenv("AUTH_KEYS_DIR", str(keys))
    assert await asyncio.to_thread(main, ["keys", "import", str(pem_file)]) == 0
    assert capsys.readouterr().out == f"{kid}\tactive\n"
    assert await asyncio.to_thread(main, ["keys", "import", str(pem_file)]) == 1
    assert "already in" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["keys", "import", str(tmp_path / "missing.pem")]) == 1
    assert "missing.pem" in capsys.readouterr().err

    with_dir = create_app(make_settings(url, tmp_path, keys_dir=keys))
    async with LifespanManager(with_dir):
        transport = httpx.ASGITransport(app=with_dir)
        async with httpx.AsyncClient(transport=transport, base_url=TEST_ISSUER) as client:
            bearer = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/users/me", headers=bearer)).status_code == 200
            jwks = (await client.get("/.well-known/jwks.json")).json()
            # The imported key, and the RS256 key the directory generated for ID tokens.
            published = {key["kid"]: key["alg"] for key in jwks["keys"]}
            assert published.pop(kid) == "ES256"
            assert list(published.values()) == ["RS256"]


def test_version_has_one_source(capsys: pytest.CaptureFixture[str]) -> None:
    """`--version`, the installed metadata (pyproject's dynamic version) and the OpenAPI
    document all read auth_service.__version__."""
    from importlib.metadata import version

    from auth_service import __version__

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"auth-service {__version__}"
    assert version("auth-service") == __version__
    committed = json.loads((Path(__file__).resolve().parent.parent / "openapi.json").read_text())
    assert committed["info"]["version"] == __version__

"""Hostile and malformed input: exact 4xx answers, never a 500, never a leak."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from starlette.types import Message, Receive, Scope, Send

from auth_service.api.middleware import BodySizeLimit
from auth_service.config import Settings
from tests.conftest import PASSWORD, access_token, direct_sql, password_grant, register

FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}
# Fragments of tracebacks, driver errors, SQL and password hashes.
LEAK_MARKERS = (
    "traceback",
    'file "',
    "sqlalchemy",
    "asyncpg",
    "aiosqlite",
    "sqlite3",
    "psycopg",
    "select ",
    "insert into",
    "background on this error",
    "$argon2",
    "$2b$",
)
SECRET = "Sup3r secret passphrase, do not echo"
SQL_USERNAMES = ["alice'--", '"; DROP TABLE users; --', "%", "_", "' OR '1'='1", "a%", "%%%"]


def assert_error(response: httpx.Response, status: int, code: str, *never: str) -> dict[str, Any]:
    """Exact status and error code, JSON, and nothing that must not leak."""
    assert response.status_code != 500, response.text
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    lowered = response.text.lower()
    for marker in LEAK_MARKERS:
        assert marker not in lowered, marker
    for secret in never:
        assert secret not in response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == code, body
    assert isinstance(body["error_description"], str)
    return body


async def post_form(client: httpx.AsyncClient, body: bytes | str) -> httpx.Response:
    return await client.post("/token", content=body, headers=FORM)


async def user_count(app: FastAPI) -> int:
    async with direct_sql(app) as connection:
        return int((await connection.execute(text("SELECT count(*) FROM users"))).scalar_one())


# --- body size ---------------------------------------------------------------------------


async def test_oversized_token_body_is_413(client: httpx.AsyncClient, settings: Settings) -> None:
    assert settings.max_body_bytes == 64 * 1024
    body = f"grant_type=password&username=alice&password={SECRET}&pad=".encode()
    body += b"x" * (settings.max_body_bytes + 1 - len(body))
    response = await post_form(client, body)
    assert_error(response, 413, "invalid_request", SECRET)


async def test_token_body_of_exactly_the_limit_is_not_413(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    await register(client)
    body = b"grant_type=password&username=alice&password="
    body += b"x" * (settings.max_body_bytes - len(body))
    assert len(body) == settings.max_body_bytes
    # Reaches the grant: the password is over the policy maximum.
    assert_error(await post_form(client, body), 400, "invalid_request", "x" * 2000)


async def test_oversized_register_body_is_413(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    password = SECRET + "x" * settings.max_body_bytes
    response = await client.post("/register", json={"username": "alice", "password": password})
    assert_error(response, 413, "invalid_request", SECRET)
    assert await user_count(app) == 0


async def _stream(prefix: bytes, total: int, chunk: int = 4096) -> AsyncIterator[bytes]:
    yield prefix
    sent = len(prefix)
    while sent < total:
        yield b"x" * chunk
        sent += chunk


async def test_streamed_oversized_token_body_is_413(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    prefix = f"grant_type=password&username=alice&password={SECRET}".encode()
    response = await client.post(
        "/token", content=_stream(prefix, 2 * settings.max_body_bytes), headers=FORM
    )
    assert "content-length" not in response.request.headers
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert_error(response, 413, "invalid_request", SECRET)


async def test_streamed_oversized_register_body_is_413(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings
) -> None:
    prefix = f'{{"username": "alice", "password": "{SECRET}'.encode()
    response = await client.post(
        "/register", content=_stream(prefix, 2 * settings.max_body_bytes), headers=JSON
    )
    assert "content-length" not in response.request.headers
    assert_error(response, 413, "invalid_request", SECRET)
    assert await user_count(app) == 0


async def test_streamed_small_body_is_accepted(client: httpx.AsyncClient) -> None:
    """Control: chunked bodies under the limit work."""
    await register(client)
    body = f"grant_type=password&username=alice&password={PASSWORD}".encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    response = await client.post("/token", content=chunks(), headers=FORM)
    assert "content-length" not in response.request.headers
    assert response.status_code == 200, response.text


# --- form encoding --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "grant_type=password&username=al%00ice&password=correct+horse+battery+staple",
        "grant_type=password&username=alice&password=correct+horse%00battery+staple",
        "grant_type=password&username=alice%00&password=correct+horse+battery+staple",
        "grant_type=password%00&username=alice&password=correct+horse+battery+staple",
        "grant_type=password&username=alice&password=correct+horse+battery+staple&x%00=1",
    ],
)
async def test_nul_bytes_in_form_are_invalid_request(client: httpx.AsyncClient, body: str) -> None:
    assert_error(await post_form(client, body), 400, "invalid_request", "correct horse")


@pytest.mark.parametrize(
    "body",
    [
        "grant_type=password&username=%ff%fe&password=correct+horse+battery+staple",
        "grant_type=password&username=alice&password=correct+horse%c3%28battery",
        "grant_type=password&username=%c0%afalice&password=correct+horse+battery+staple",
        "grant_type=password&username=alice&password=%ed%a0%80correct+horse+battery",
        "grant_type=password&%ff=1&username=alice&password=correct+horse+battery+staple",
    ],
)
async def test_invalid_utf8_percent_encoding_is_invalid_request(
    client: httpx.AsyncClient, body: str
) -> None:
    assert_error(await post_form(client, body), 400, "invalid_request", "correct horse")


@pytest.mark.parametrize(
    "body",
    [
        "grant_type=password&username=alicé&password=correct+horse+battery+staple".encode(),
        b"grant_type=password&username=alice&password=correct+horse+\xff\xfe",
        b"grant_type=password&username=\xe2\x80\xaealice&password=correct+horse+battery",
    ],
)
async def test_raw_non_ascii_bytes_in_form_are_invalid_request(
    client: httpx.AsyncClient, body: bytes
) -> None:
    assert_error(await post_form(client, body), 400, "invalid_request", "correct horse")


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/json"},
        {"content-type": "application/x-www-form-urlencoded-evil"},
        {},
    ],
)
async def test_wrong_content_type_on_token_is_invalid_request(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    body = f"grant_type=password&username=alice&password={PASSWORD}"
    response = await client.post("/token", content=body, headers=headers)
    assert_error(response, 400, "invalid_request", PASSWORD)


async def test_multipart_on_token_is_invalid_request(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/token",
        data={"grant_type": "password", "username": "alice", "password": PASSWORD},
        files={"file": ("a.txt", b"hello", "text/plain")},
    )
    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert_error(response, 400, "invalid_request", PASSWORD)


async def test_form_content_type_with_charset_is_accepted(client: httpx.AsyncClient) -> None:
    """Control for the content-type checks: parameters on the media type are fine."""
    await register(client)
    body = f"grant_type=password&username=alice&password={PASSWORD}"
    headers = {"content-type": "application/x-www-form-urlencoded; charset=UTF-8"}
    response = await client.post("/token", content=body, headers=headers)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("fields", [17, 5000])
async def test_too_many_form_fields_is_invalid_request(
    client: httpx.AsyncClient, fields: int
) -> None:
    body = f"grant_type=password&username=alice&password={PASSWORD}&" + "&".join(
        f"f{i}=v" for i in range(fields)
    )
    assert_error(await post_form(client, body), 400, "invalid_request", PASSWORD)


async def test_very_long_username_on_token_is_invalid_grant(client: httpx.AsyncClient) -> None:
    await register(client)
    response = await password_grant(client, username="a" * 30_000)
    assert_error(response, 400, "invalid_grant", "a" * 100)


# --- /register JSON ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        f'{{"username": "alice", "password": "{SECRET}"',
        f'{{"username": "alice", "password": "{SECRET}",}}',
        f"{{'username': 'alice', 'password': '{SECRET}'}}",
        f'{{"username": "alice" "password": "{SECRET}"}}',
        f"username=alice&password={SECRET}",
        "{",
    ],
)
async def test_invalid_json_to_register_is_422_invalid_request(
    app: FastAPI, client: httpx.AsyncClient, body: str
) -> None:
    response = await client.post("/register", content=body, headers=JSON)
    result = assert_error(response, 422, "invalid_request", SECRET)
    assert isinstance(result["reasons"], list)
    assert result["reasons"]
    assert all(SECRET not in reason for reason in result["reasons"])
    assert await user_count(app) == 0


@pytest.mark.parametrize(
    "body",
    [
        ["alice", SECRET],
        {"username": "alice", "password": [SECRET]},
        {"username": "alice", "password": {"value": SECRET}},
        {"username": "alice", "password": 12345678901234567890},
        {"username": ["alice"], "password": SECRET},
        {"username": "alice"},
        {"password": SECRET},
        {"username": "alice", "password": SECRET + "x" * 5000},
        {"username": "a" * 300, "password": SECRET},
        None,
    ],
)
async def test_json_of_the_wrong_shape_is_422_without_echo(
    app: FastAPI, client: httpx.AsyncClient, body: Any
) -> None:
    response = await client.post("/register", json=body)
    result = assert_error(response, 422, "invalid_request", SECRET, "12345678901234567890")
    assert all(SECRET not in reason for reason in result["reasons"])
    assert await user_count(app) == 0


@pytest.mark.parametrize(
    "body",
    [
        b'{"username": "alice", "password": "\xff\xfe not utf-8"}',
        b'{"username": "alice", "password": ' + b"1" * 5000 + b"}",
        b"[" * 50_000 + b"]" * 10,
    ],
)
async def test_undecodable_json_to_register_is_400_invalid_request(
    app: FastAPI, client: httpx.AsyncClient, body: bytes
) -> None:
    """Bodies json.loads cannot even decode: FastAPI's 400, in our error shape, not a 500."""
    response = await client.post("/register", content=body, headers=JSON)
    assert_error(response, 400, "invalid_request", "not utf-8")
    assert await user_count(app) == 0


async def test_extra_fields_in_register_are_422_and_create_nothing(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    body = {"username": "alice", "password": SECRET, "is_active": False, "role": "admin"}
    result = assert_error(await client.post("/register", json=body), 422, "invalid_request", SECRET)
    assert any("is_active" in reason for reason in result["reasons"])
    assert any("role" in reason for reason in result["reasons"])
    assert await user_count(app) == 0
    await register(client, "alice", SECRET)


@pytest.mark.parametrize("password", [SECRET + "\x00", "\x00" + SECRET, SECRET[:10] + "\x00" * 20])
async def test_nul_in_registered_password_is_422(
    app: FastAPI, client: httpx.AsyncClient, password: str
) -> None:
    response = await client.post("/register", json={"username": "alice", "password": password})
    result = assert_error(response, 422, "invalid_password", SECRET, SECRET[:10])
    assert any("NUL" in reason for reason in result["reasons"])
    assert await user_count(app) == 0


@pytest.mark.parametrize("username", ["al\x00ice", "alice\x00", "\x00\x00\x00"])
async def test_nul_in_registered_username_is_422(
    app: FastAPI, client: httpx.AsyncClient, username: str
) -> None:
    response = await client.post("/register", json={"username": username, "password": SECRET})
    assert_error(response, 422, "invalid_username", SECRET)
    assert await user_count(app) == 0


async def test_over_long_password_on_register_is_422_without_echo(
    client: httpx.AsyncClient,
) -> None:
    password = SECRET + "y" * 1100
    response = await client.post("/register", json={"username": "alice", "password": password})
    result = assert_error(response, 422, "invalid_password", SECRET, "y" * 100)
    assert result["reasons"] == ["password must be at most 1024 characters"]


# --- SQL metacharacters -----------------------------------------------------------------------


@pytest.mark.parametrize("username", SQL_USERNAMES)
async def test_sql_metacharacters_in_registered_username_are_invalid_username(
    app: FastAPI, client: httpx.AsyncClient, username: str
) -> None:
    response = await client.post("/register", json={"username": username, "password": SECRET})
    result = assert_error(response, 422, "invalid_username", SECRET)
    assert result["reasons"]
    assert all(isinstance(reason, str) for reason in result["reasons"])
    assert "DROP TABLE" not in response.text
    # The table is intact and works.
    assert await user_count(app) == 0
    await register(client, "alice", SECRET)
    assert (await password_grant(client, "alice", SECRET)).status_code == 200
    assert await user_count(app) == 1


@pytest.mark.parametrize("username", SQL_USERNAMES)
async def test_sql_metacharacters_in_token_username_are_invalid_grant(
    app: FastAPI, client: httpx.AsyncClient, username: str
) -> None:
    await register(client, "alice", SECRET)
    unknown = await password_grant(client, "nobody-here", SECRET)
    response = await password_grant(client, username, SECRET)
    body = assert_error(response, 400, "invalid_grant", SECRET, "DROP TABLE")
    assert body == unknown.json()
    assert await user_count(app) == 1
    assert (await password_grant(client, "alice", SECRET)).status_code == 200


async def test_like_wildcards_do_not_match_other_users(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """`_` is a legal username character; it must compare literally, not as a LIKE wildcard."""
    await register(client, "alice", SECRET)
    assert_error(await password_grant(client, "al_ce", SECRET), 400, "invalid_grant")
    assert_error(await password_grant(client, "_____", SECRET), 400, "invalid_grant")
    # And "al_ce" is a different, free username.
    await register(client, "al_ce", SECRET + "2")
    assert await user_count(app) == 2
    assert (await password_grant(client, "al_ce", SECRET + "2")).status_code == 200
    assert_error(await password_grant(client, "al_ce", SECRET), 400, "invalid_grant")


# --- routing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/nope", "/users/me/../../etc/passwd", "/.well-known/openid-configuration/extra"]
)
async def test_unknown_route_is_404_json(client: httpx.AsyncClient, path: str) -> None:
    assert_error(await client.get(path), 404, "not_found")


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/token", "POST"),
        ("PUT", "/token", "POST"),
        ("GET", "/register", "POST"),
        ("PUT", "/users/me", "DELETE, GET"),
        ("POST", "/.well-known/jwks.json", "GET"),
    ],
)
async def test_wrong_method_is_405_not_500(
    client: httpx.AsyncClient, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path)
    assert_error(response, 405, "invalid_request")
    assert response.headers["allow"] == allowed


# --- NUL characters never reach SQL (PostgreSQL refuses 0x00 in text) ------------------------


def basic(credentials: str) -> dict[str, str]:
    """An Authorization header carrying `credentials` ("id:secret") as given."""
    return {"authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/token", "grant_type=password&username=alice&password=correct+horse+battery+staple"),
        ("/revoke", "token=abc"),
        ("/introspect", "token=abc"),
    ],
)
@pytest.mark.parametrize(
    "credentials", ["cli\x00ent:secret", "client:sec\x00ret", "cli%00ent:secret", "client:s%00"]
)
async def test_nul_in_basic_credentials_is_invalid_client(
    client: httpx.AsyncClient, path: str, body: str, credentials: str
) -> None:
    response = await client.post(path, content=body, headers={**FORM, **basic(credentials)})
    assert_error(response, 401, "invalid_client")


async def test_nul_in_a_session_id_is_not_found(client: httpx.AsyncClient) -> None:
    headers = {"authorization": f"Bearer {await access_token(client)}"}
    for session_id in ("%00", "abc%00def"):
        assert_error(
            await client.delete(f"/sessions/{session_id}", headers=headers), 404, "not_found"
        )


@pytest.mark.parametrize(
    "headers",
    [
        [(b"transfer-encoding", b"chunked")],
        [(b"transfer-encoding", b"chunked"), (b"content-length", b"0")],
        [(b"content-length", b"0"), (b"transfer-encoding", b"chunked")],
    ],
)
async def test_a_chunked_body_is_bounded_whatever_else_the_headers_say(
    headers: list[tuple[bytes, bytes]],
) -> None:
    """Only a request with neither a length nor chunking skips the body limit."""
    reached: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(True)

    chunks = [b"x" * 800, b"x" * 800]
    sent: list[Message] = []

    async def receive() -> Message:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: Message) -> None:
        sent.append(message)

    limit = BodySizeLimit(app, max_bytes=1024)
    await limit({"type": "http", "headers": headers}, receive, send)
    assert not reached
    assert sent[0]["status"] == 413

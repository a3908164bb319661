"""The admin HTTP API for users: list (paginated), show, enable, disable, delete."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from auth_service.services.accounts import set_scopes
from tests.conftest import FakeClock, password_grant, register


async def admin_headers(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    await register(client, "root")
    await set_scopes(app.state.services, "root", frozenset({"profile", "admin"}))
    response = await password_grant(client, "root", scope="admin")
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/users"),
        ("GET", "/admin/users/alice"),
        ("POST", "/admin/users/alice/enable"),
        ("DELETE", "/admin/users/alice"),
    ],
)
async def test_each_operation_needs_the_admin_scope(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    await register(client)
    assert (await client.request(method, path)).status_code == 401
    plain = (await password_grant(client)).json()["access_token"]
    response = await client.request(method, path, headers={"Authorization": f"Bearer {plain}"})
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


async def test_list_pages_through_every_user_in_name_order(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await admin_headers(app, client)
    for name in ("Carol", "alice", "bob", "dave"):
        await register(client, name)
    seen: list[str] = []
    after: str | None = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 2, **({"after": after} if after else {})}
        page = (await client.get("/admin/users", params=params, headers=headers)).json()
        assert len(page["users"]) <= 2
        seen += [user["username"] for user in page["users"]]
        after = page["next"]
        if after is None:
            break
    assert seen == ["alice", "bob", "Carol", "dave", "root"]
    first = (await client.get("/admin/users", headers=headers)).json()["users"][0]
    assert set(first) == {
        "id",
        "username",
        "active",
        "scopes",
        "created_at",
        "updated_at",
        "disabled_at",
        "open_sessions",
    }
    assert "password_hash" not in str(first)


async def test_show_disable_list_disabled_and_enable(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await admin_headers(app, client)
    await register(client, "alice")
    assert (await password_grant(client, "alice")).status_code == 200
    shown = (await client.get("/admin/users/ALICE", headers=headers)).json()
    assert (shown["username"], shown["active"], shown["open_sessions"]) == ("alice", True, 1)
    assert shown["scopes"] == ["profile"]

    assert (await client.post("/admin/users/alice/disable", headers=headers)).status_code == 204
    shown = (await client.get("/admin/users/alice", headers=headers)).json()
    assert (shown["active"], shown["open_sessions"]) == (False, 0)
    assert shown["disabled_at"] is not None
    listed = (await client.get("/admin/users?disabled=true", headers=headers)).json()
    assert [user["username"] for user in listed["users"]] == ["alice"]
    assert (await password_grant(client, "alice")).json()["error"] == "invalid_grant"

    assert (await client.post("/admin/users/alice/enable", headers=headers)).status_code == 204
    assert (await client.get("/admin/users?disabled=true", headers=headers)).json()["users"] == []
    assert (await password_grant(client, "alice")).status_code == 200


async def test_unknown_users_are_404(app: FastAPI, client: httpx.AsyncClient) -> None:
    headers = await admin_headers(app, client)
    for method, path in [
        ("GET", "/admin/users/nobody"),
        ("POST", "/admin/users/nobody/enable"),
        ("DELETE", "/admin/users/nobody"),
    ]:
        response = await client.request(method, path, headers=headers)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"] == "not_found"


async def test_delete_only_after_the_disabled_users_tokens_expired(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    headers = await admin_headers(app, client)
    await register(client, "alice")
    assert (await password_grant(client, "alice")).status_code == 200
    active = await client.delete("/admin/users/alice", headers=headers)
    assert active.status_code == 409
    assert "disable the user first" in active.json()["error_description"]

    assert (await client.post("/admin/users/alice/disable", headers=headers)).status_code == 204
    # Deleting drops the SQL row a flushed denylist is rebuilt from: not while tokens live.
    early = await client.delete("/admin/users/alice", headers=headers)
    assert early.status_code == 409
    assert "may live" in early.json()["error_description"]

    horizon = app.state.services.session_policy.access_token_horizon.total_seconds()
    clock.advance(horizon + 1)
    headers = await fresh_admin_headers(client)
    assert (await client.delete("/admin/users/alice", headers=headers)).status_code == 204
    assert (await client.get("/admin/users/alice", headers=headers)).status_code == 404
    # The name is free again.
    await register(client, "alice")


async def fresh_admin_headers(client: httpx.AsyncClient) -> dict[str, str]:
    response = await password_grant(client, "root", scope="admin")
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def test_a_nul_in_the_cursor_is_a_client_error(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    headers = await admin_headers(app, client)
    response = await client.get("/admin/users", params={"after": "a\x00b"}, headers=headers)
    assert response.status_code == 422


async def test_method_not_allowed_lists_every_method_of_the_path(
    client: httpx.AsyncClient,
) -> None:
    # GET and DELETE /admin/users/{username} are two routes; Starlette named only the first.
    response = await client.put("/admin/users/alice")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, GET"

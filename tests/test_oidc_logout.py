"""RP-Initiated Logout 1.0, as the conformance suite's RP-initiated logout modules test it,
and an ID token refused wherever an access token is expected."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from auth_service.verify import TokenError, TokenVerifier
from tests.conftest import TEST_ISSUER, FakeClock, register
from tests.oidc_helpers import (
    RP_LOGGED_OUT,
    RelyingParty,
    add_client,
    authorize,
    authorize_params,
    csrf_token,
    exchange,
    query,
)


async def _logged_in(
    app: FastAPI, client: httpx.AsyncClient
) -> tuple[RelyingParty, dict[str, str]]:
    await register(client)
    rp = await add_client(app)
    callback = await authorize(client, rp, authorize_params(rp))
    response = await exchange(client, rp, callback["code"])
    assert response.status_code == 200, response.text
    return rp, response.json()


async def _prompt_none_error(client: httpx.AsyncClient, rp: RelyingParty) -> str | None:
    response = await client.get("/authorize", params=authorize_params(rp, prompt="none"))
    return query(response.headers["location"]).get("error")


async def test_logout_with_a_valid_hint_redirects_with_state_and_ends_everything(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rp, tokens = await _logged_in(app, client)
    assert await _prompt_none_error(client, rp) is None  # signed in
    response = await client.get(
        "/end_session",
        params={
            "id_token_hint": tokens["id_token"],
            "post_logout_redirect_uri": RP_LOGGED_OUT,
            "state": "s-123",
        },
    )
    assert response.status_code == 302
    assert response.headers["location"] == f"{RP_LOGGED_OUT}?state=s-123"
    assert await _prompt_none_error(client, rp) == "login_required"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/userinfo", headers=bearer)).status_code == 401
    refreshed = await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **rp.auth()},
    )
    assert refreshed.json()["error"] == "invalid_grant"


async def test_an_expired_hint_still_allows_the_redirect(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    _, tokens = await _logged_in(app, client)
    clock.advance(3600)  # far past the ID token's exp
    response = await client.post(
        "/end_session",
        data={"id_token_hint": tokens["id_token"], "post_logout_redirect_uri": RP_LOGGED_OUT},
    )
    assert response.status_code == 303
    assert response.headers["location"] == RP_LOGGED_OUT


@pytest.mark.parametrize(
    "params",
    [
        {"post_logout_redirect_uri": RP_LOGGED_OUT},  # no hint
        {"post_logout_redirect_uri": "https://attacker.example/", "hint": "yes"},
        {"post_logout_redirect_uri": RP_LOGGED_OUT, "id_token_hint": "forged.token.value"},
        {"post_logout_redirect_uri": RP_LOGGED_OUT, "hint": "yes", "client_id": "another"},
    ],
    ids=["no-hint", "unregistered-uri", "bad-hint", "other-client"],
)
async def test_otherwise_the_user_confirms_on_our_page_and_is_not_redirected(
    app: FastAPI, client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    rp, tokens = await _logged_in(app, client)
    await add_client(app, "another")
    if params.pop("hint", None):
        params["id_token_hint"] = tokens["id_token"]
    page = await client.get("/end_session", params=params)
    assert page.status_code == 200
    assert "location" not in page.headers
    assert "Sign out" in page.text
    assert await _prompt_none_error(client, rp) is None  # nothing ended yet
    forged = await client.post("/end_session", data={"confirm": "yes", "csrf_token": "x"})
    assert forged.status_code == 403
    done = await client.post(
        "/end_session", data={"confirm": "yes", "csrf_token": csrf_token(page.text)}
    )
    assert done.status_code == 200
    assert "location" not in done.headers
    assert "signed out" in done.text
    assert await _prompt_none_error(client, rp) == "login_required"


async def test_introspection_and_the_verifier_refuse_an_id_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    from auth_service.services.clients import register_client

    _, tokens = await _logged_in(app, client)
    resource = await register_client(
        app.state.services,
        "resource",
        confidential=True,
        grant_types=frozenset(),
        scopes=frozenset({"profile"}),
        introspection=True,
    )
    assert resource.secret is not None
    introspected = await client.post(
        "/introspect",
        data={"token": tokens["id_token"]},
        auth=("resource", resource.secret),
    )
    assert introspected.json() == {"active": False}
    live = await client.post(
        "/introspect", data={"token": tokens["access_token"]}, auth=("resource", resource.secret)
    )
    assert live.json()["active"] is True
    verifier = TokenVerifier(TEST_ISSUER, audience="api", http=client)
    with pytest.raises(TokenError):
        await verifier.verify(tokens["id_token"])
    assert (await verifier.verify(tokens["access_token"])).subject

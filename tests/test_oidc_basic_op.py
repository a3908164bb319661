"""The OpenID conformance suite's Basic OP and Config OP modules, ported as scenarios.

Module names in the comments are the suite's (OIDCCBasicTestPlan / OIDCCConfigTestPlan).
Every test runs on SQLite + memory and on PostgreSQL + Redis (conftest's `backend`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.conftest import TEST_ISSUER, FakeClock, register
from tests.oidc_helpers import (
    RP_CALLBACK,
    RelyingParty,
    add_client,
    at_hash,
    authorize,
    authorize_params,
    csrf_token,
    exchange,
    follow,
    pkce_pair,
    query,
    verify_id_token,
)

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.json"


async def _signed_in_code(
    app: FastAPI, client: httpx.AsyncClient, **client_options: Any
) -> tuple[RelyingParty, dict[str, str], dict[str, str]]:
    await register(client)
    rp = await add_client(app, **client_options)
    params = authorize_params(rp)
    callback = await authorize(client, rp, params)
    return rp, params, callback


# --- oidcc-discovery-* (Config OP) -------------------------------------------------------


async def test_discovery_document_has_every_required_and_recommended_member(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/.well-known/openid-configuration")
    assert response.status_code == 200
    config = response.json()
    assert config["issuer"] == TEST_ISSUER
    for member, value in {
        "authorization_endpoint": f"{TEST_ISSUER}/authorize",
        "token_endpoint": f"{TEST_ISSUER}/token",
        "userinfo_endpoint": f"{TEST_ISSUER}/userinfo",
        "jwks_uri": f"{TEST_ISSUER}/.well-known/jwks.json",
        "end_session_endpoint": f"{TEST_ISSUER}/end_session",
    }.items():
        assert config[member] == value
    assert config["response_types_supported"] == ["code"]
    assert config["subject_types_supported"] == ["public"]
    assert "RS256" in config["id_token_signing_alg_values_supported"]
    assert "ES256" in config["id_token_signing_alg_values_supported"]
    assert "openid" in config["scopes_supported"]
    assert {"sub", "iss", "auth_time", "preferred_username"} <= set(config["claims_supported"])
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["request_uri_parameter_supported"] is False
    assert config["request_parameter_supported"] is False
    assert config["authorization_response_iss_parameter_supported"] is True
    assert "authorization_code" in config["grant_types_supported"]
    # RFC 8414's document says the same about everything both describe.
    oauth = (await client.get("/.well-known/oauth-authorization-server")).json()
    for member, value in oauth.items():
        assert config[member] == value, member


# --- oidcc-server, oidcc-id-token-*, oidcc-userinfo-* -------------------------------------


async def test_code_flow_returns_a_verifiable_rs256_id_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    user = await register(client)
    rp = await add_client(app)
    params = authorize_params(rp)
    callback = await authorize(client, rp, params)
    assert callback["state"] == params["state"]
    assert callback["iss"] == TEST_ISSUER  # RFC 9207
    response = await exchange(client, rp, callback["code"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert set(body["scope"].split()) == {"openid", "profile"}
    claims = await verify_id_token(client, body["id_token"], rp)
    assert claims["sub"] == user["id"]
    assert claims["aud"] == rp.client_id
    assert claims["nonce"] == params["nonce"]  # oidcc-ensure-request-with-nonce echo
    assert claims["amr"] == ["pwd"]
    assert claims["at_hash"] == at_hash(body["access_token"])
    assert claims["exp"] > claims["iat"] >= claims["auth_time"]
    userinfo = await client.get(
        "/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert userinfo.status_code == 200, userinfo.text
    assert userinfo.json()["sub"] == claims["sub"]
    assert userinfo.json()["preferred_username"] == "alice"
    posted = await client.post("/userinfo", data={"access_token": body["access_token"]})
    assert posted.status_code == 200
    assert posted.json() == userinfo.json()


async def test_es256_client_gets_an_es256_id_token(app: FastAPI, client: httpx.AsyncClient) -> None:
    rp, _, callback = await _signed_in_code(app, client, id_token_alg="ES256")
    body = (await exchange(client, rp, callback["code"])).json()
    claims = await verify_id_token(client, body["id_token"], rp, algorithm="ES256")
    assert claims["at_hash"] == at_hash(body["access_token"])


async def test_refreshed_id_token_keeps_auth_time(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    rp, _, callback = await _signed_in_code(app, client)
    first = (await exchange(client, rp, callback["code"])).json()
    before = await verify_id_token(client, first["id_token"], rp)
    clock.advance(5)
    refreshed = await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"], **rp.auth()},
    )
    assert refreshed.status_code == 200, refreshed.text
    after = await verify_id_token(client, refreshed.json()["id_token"], rp)
    assert after["auth_time"] == before["auth_time"]
    assert (after["iss"], after["sub"], after["aud"], after["sid"]) == (
        before["iss"],
        before["sub"],
        before["aud"],
        before["sid"],
    )
    assert after["iat"] > before["iat"]
    assert "nonce" not in after


# --- oidcc-ensure-registered-redirect-uri, oidcc-redirect-uri-* ---------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"redirect_uri": "https://attacker.example/cb"},
        {"redirect_uri": RP_CALLBACK + "/extra"},
        {"redirect_uri": ""},
        {"client_id": "nobody"},
    ],
    ids=["foreign", "prefix", "missing", "unknown-client"],
)
async def test_an_untrusted_request_gets_an_html_page_never_a_redirect(
    app: FastAPI, client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    rp = await add_client(app)
    response = await client.get("/authorize", params=authorize_params(rp, **params))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("extra", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"response_type": ""}, "invalid_request"),
        ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
        ({"request_uri": "https://rp.example/req"}, "request_uri_not_supported"),
        ({"prompt": "none login"}, "invalid_request"),
        ({"max_age": "soon"}, "invalid_request"),
        ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": "S256"}, "invalid_request"),
        ({"response_mode": "fragment"}, "invalid_request"),
        ({"id_token_hint": "not.a.token"}, "invalid_request"),
    ],
)
async def test_other_errors_go_back_with_state_and_iss(
    app: FastAPI, client: httpx.AsyncClient, extra: dict[str, str], error: str
) -> None:
    rp = await add_client(app)
    params = authorize_params(rp, **extra)
    response = await client.get("/authorize", params=params)
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(RP_CALLBACK + "?")
    answer = query(location)
    assert answer["error"] == error
    assert answer["state"] == params["state"]
    assert answer["iss"] == TEST_ISSUER


async def test_unknown_parameters_are_ignored(app: FastAPI, client: httpx.AsyncClient) -> None:
    await register(client)
    rp = await add_client(app)
    params = authorize_params(rp, display="page", ui_locales="de", claims_locales="fr", x="1")
    callback = await authorize(client, rp, params)
    assert "code" in callback


async def test_repeated_parameters_are_refused(app: FastAPI, client: httpx.AsyncClient) -> None:
    rp = await add_client(app)
    url = httpx.URL("/authorize", params=authorize_params(rp))
    response = await client.get(str(url) + "&scope=openid")
    assert query(response.headers["location"])["error"] == "invalid_request"


async def test_post_to_the_authorization_endpoint(app: FastAPI, client: httpx.AsyncClient) -> None:
    await register(client)
    rp = await add_client(app)
    response = await client.post("/authorize", data=authorize_params(rp))
    callback = query(await follow(client, response))
    assert (await exchange(client, rp, callback["code"])).status_code == 200


# --- oidcc-codereuse, oidcc-codereuse-30seconds ------------------------------------------


async def test_a_replayed_code_is_refused_and_revokes_its_tokens(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    rp, _, callback = await _signed_in_code(app, client)
    first = await exchange(client, rp, callback["code"])
    assert first.status_code == 200
    tokens = first.json()
    clock.advance(30)
    replay = await exchange(client, rp, callback["code"])
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert (await client.get("/userinfo", headers=bearer)).status_code == 401
    refreshed = await client.post(
        "/token",
        data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], **rp.auth()},
    )
    assert refreshed.json()["error"] == "invalid_grant"


async def test_a_code_expires_after_sixty_seconds(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    rp, _, callback = await _signed_in_code(app, client)
    clock.advance(61)
    response = await exchange(client, rp, callback["code"])
    assert response.json()["error"] == "invalid_grant"


async def test_a_code_is_bound_to_its_client_and_redirect_uri(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rp, _, callback = await _signed_in_code(app, client)
    other = await add_client(app, "other-rp")
    stolen = await exchange(client, other, callback["code"])
    assert stolen.json()["error"] == "invalid_grant"
    # Spent by that attempt: the rightful client cannot use it either.
    assert (await exchange(client, rp, callback["code"])).json()["error"] == "invalid_grant"
    rp2, _, callback2 = await _signed_in_code_again(app, client, rp)
    moved = await exchange(client, rp2, callback2["code"], redirect_uri="https://rp.example/x")
    assert moved.json()["error"] == "invalid_grant"


async def _signed_in_code_again(
    app: FastAPI, client: httpx.AsyncClient, rp: RelyingParty
) -> tuple[RelyingParty, dict[str, str], dict[str, str]]:
    params = authorize_params(rp)
    return rp, params, await authorize(client, rp, params)


# --- oidcc-prompt-none-not-logged-in, oidcc-prompt-login, oidcc-max-age-* ---------------


async def test_prompt_none_without_a_session_is_login_required(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rp = await add_client(app)
    params = authorize_params(rp, prompt="none")
    response = await client.get("/authorize", params=params)
    answer = query(response.headers["location"])
    assert answer == {"error": "login_required", "state": params["state"], "iss": TEST_ISSUER} | {
        "error_description": answer["error_description"]
    }


async def test_second_request_uses_the_session_and_prompt_login_asks_again(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock
) -> None:
    rp, _, callback = await _signed_in_code(app, client)
    first = await verify_id_token(
        client,
        (await exchange(client, rp, callback["code"])).json()["id_token"],
        rp,
    )
    clock.advance(2)
    pages: list[str] = []
    sso = await authorize(client, rp, authorize_params(rp, prompt="none"), pages=pages)
    assert pages == []  # SSO: no password
    again = await verify_id_token(
        client,
        (await exchange(client, rp, sso["code"])).json()["id_token"],
        rp,
    )
    assert again["auth_time"] == first["auth_time"]
    assert again["sid"] == first["sid"]
    clock.advance(2)
    relogin = await authorize(client, rp, authorize_params(rp, prompt="login"), pages=pages)
    assert pages == ["login"]
    later = await verify_id_token(
        client,
        (await exchange(client, rp, relogin["code"])).json()["id_token"],
        rp,
    )
    assert later["auth_time"] >= first["auth_time"] + 4
    assert later["sid"] == first["sid"]  # the same browser session, re-authenticated


@pytest.mark.parametrize(("max_age", "asks"), [("1", True), ("10000", False)])
async def test_max_age(
    app: FastAPI, client: httpx.AsyncClient, clock: FakeClock, max_age: str, asks: bool
) -> None:
    rp, _, callback = await _signed_in_code(app, client)
    first = await verify_id_token(
        client,
        (await exchange(client, rp, callback["code"])).json()["id_token"],
        rp,
    )
    clock.advance(2)
    pages: list[str] = []
    answer = await authorize(client, rp, authorize_params(rp, max_age=max_age), pages=pages)
    assert pages == (["login"] if asks else [])
    claims = await verify_id_token(
        client,
        (await exchange(client, rp, answer["code"])).json()["id_token"],
        rp,
    )
    if asks:
        assert claims["auth_time"] >= first["auth_time"] + 2
    else:
        assert claims["auth_time"] == first["auth_time"]


async def test_id_token_hint_for_another_user_with_prompt_none_is_login_required(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rp, _, callback = await _signed_in_code(app, client)
    hint = (await exchange(client, rp, callback["code"])).json()["id_token"]
    same = await client.get(
        "/authorize",
        params=authorize_params(rp, prompt="none", id_token_hint=hint),
    )
    assert "code" in query(same.headers["location"])
    await register(client, "bob")
    async with httpx.AsyncClient(transport=client._transport, base_url=TEST_ISSUER) as bob:
        await authorize(bob, rp, authorize_params(rp), username="bob")
        other = await bob.get(
            "/authorize",
            params=authorize_params(rp, prompt="none", id_token_hint=hint),
        )
    assert query(other.headers["location"])["error"] == "login_required"


# --- login page ---------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["alice", "nobody"])
async def test_a_failed_login_says_only_invalid_username_or_password(
    app: FastAPI, client: httpx.AsyncClient, username: str
) -> None:
    await register(client)
    rp = await add_client(app)
    response = await client.get("/authorize", params=authorize_params(rp))
    login = response.headers["location"]
    page = await client.get(login)
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["x-frame-options"] == "DENY"
    failed = await client.post(
        login,
        data={"csrf_token": csrf_token(page.text), "username": username, "password": "wrong" * 4},
    )
    assert failed.status_code == 401
    assert "invalid username or password" in failed.text
    assert "set-cookie" not in failed.headers or "auth_session" not in failed.headers["set-cookie"]


# --- PKCE (RFC 7636) ----------------------------------------------------------------------


async def test_pkce_s256_round_trip_and_its_failures(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    rp = await add_client(app, "public-rp", confidential=False)
    verifier, challenge = pkce_pair()
    pkce = {"code_challenge": challenge, "code_challenge_method": "S256"}
    refused = await client.get("/authorize", params=authorize_params(rp))
    assert query(refused.headers["location"])["error"] == "invalid_request"  # public: PKCE
    for bad in ({}, {"code_verifier": verifier[:-1] + ("A" if verifier[-1] != "A" else "B")}):
        answer = await authorize(client, rp, authorize_params(rp, **pkce))
        response = await exchange(client, rp, answer["code"], **bad)
        assert response.json()["error"] == "invalid_grant", bad
    answer = await authorize(client, rp, authorize_params(rp, **pkce))
    good = await exchange(client, rp, answer["code"], code_verifier=verifier)
    assert good.status_code == 200, good.text


async def test_a_verifier_without_a_challenge_is_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rp, _, callback = await _signed_in_code(app, client)
    verifier, _ = pkce_pair()
    response = await exchange(client, rp, callback["code"], code_verifier=verifier)
    assert response.json()["error"] == "invalid_grant"


# --- consent -------------------------------------------------------------------------------


async def test_consent_is_asked_remembered_and_asked_again_for_prompt_consent(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await register(client)
    rp = await add_client(app, "third-party", first_party=False)
    pages: list[str] = []
    await authorize(client, rp, authorize_params(rp), pages=pages)
    assert pages == ["login", "consent"]
    pages.clear()
    await authorize(client, rp, authorize_params(rp), pages=pages)
    assert pages == []
    await authorize(client, rp, authorize_params(rp, prompt="consent"), pages=pages)
    assert pages == ["consent"]
    pages.clear()
    wider = await authorize(client, rp, authorize_params(rp, scope="openid email"), pages=pages)
    assert pages == ["consent"]
    assert "code" in wider
    none = await client.get(
        "/authorize", params=authorize_params(rp, prompt="none", scope="openid profile email")
    )
    assert "code" in query(none.headers["location"])


async def test_denied_consent_is_access_denied(app: FastAPI, client: httpx.AsyncClient) -> None:
    await register(client)
    rp = await add_client(app, "third-party", first_party=False)
    params = authorize_params(rp)
    answer = await authorize(client, rp, params, consent="deny")
    assert answer["error"] == "access_denied"
    assert answer["state"] == params["state"]
    none = await client.get("/authorize", params=authorize_params(rp, prompt="none"))
    assert query(none.headers["location"])["error"] == "consent_required"


# --- an ID token is never an access token --------------------------------------------------


async def test_an_id_token_is_not_accepted_as_an_access_token(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    rp, _, callback = await _signed_in_code(app, client)
    id_token = (await exchange(client, rp, callback["code"])).json()["id_token"]
    bearer = {"Authorization": f"Bearer {id_token}"}
    assert (await client.get("/users/me", headers=bearer)).status_code == 401
    assert (await client.get("/userinfo", headers=bearer)).status_code == 401
    assert (await client.get("/sessions", headers=bearer)).status_code == 401


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_userinfo_without_a_token_answers_what_openapi_documents(
    client: httpx.AsyncClient, method: str
) -> None:
    """RFC 6750 §3.1: no credentials, no error code; the documented 401 must allow that
    (the fuzz test once caught openapi.json demanding `error` there)."""
    response = await client.request(method, "/userinfo")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert "error=" not in response.headers["www-authenticate"]
    assert "error" not in response.json()
    documented = json.loads(OPENAPI.read_text())["paths"]["/userinfo"][method.lower()]
    schema = documented["responses"]["401"].get("content", {}).get("application/json", {})
    assert "error" not in _required(schema.get("schema", {}), json.loads(OPENAPI.read_text()))


def _required(schema: dict[str, Any], document: dict[str, Any]) -> list[str]:
    """The required properties of a schema, following one $ref into the components."""
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return list(schema.get("required", []))

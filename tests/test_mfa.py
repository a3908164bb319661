"""TOTP enrolment and the two-step password login, on both backends, with real codes."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlparse

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from auth_service.security.data_keys import Sealed
from auth_service.services.mfa import reset_totp
from tests.conftest import PASSWORD, FakeClock, direct_sql, password_grant, register
from tests.mfa_helpers import (
    MFA_OTP,
    MFA_RECOVERY,
    bearer,
    claims_of,
    code_at,
    confirm,
    enrolled_user,
    login,
    mfa_token,
    second_step,
    start,
)


async def test_enrolment_returns_a_working_seed_uri_and_svg_qr_code(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await register(client)
    tokens = await login(client)
    response = await start(client, tokens["access_token"])
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    uri = urlparse(body["otpauth_uri"])
    assert (uri.scheme, uri.netloc, uri.path) == ("otpauth", "totp", "/auth_service:alice")
    query = parse_qs(uri.query)
    assert query["secret"] == [body["secret"]]
    assert query["issuer"] == ["auth_service"]
    svg = ET.fromstring(body["qr_svg"])
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"
    # The code an app computes from the URI is the one the service accepts.
    app_totp = pyotp.parse_uri(body["otpauth_uri"])
    assert isinstance(app_totp, pyotp.TOTP)  # parse_uri is typed to return any OTP
    confirmed = await confirm(client, tokens["access_token"], app_totp.at(clock()))
    assert confirmed.status_code == 200, confirmed.text
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10
    assert len(set(codes)) == 10


async def test_enrolment_needs_the_password(client: httpx.AsyncClient, app: FastAPI) -> None:
    await register(client)
    tokens = await login(client)
    response = await start(client, tokens["access_token"], password="not the password at all")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_current_password"
    async with direct_sql(app) as sql:
        assert (await sql.execute(text("SELECT count(*) FROM mfa_totp_factors"))).scalar() == 0
    missing = await client.post(
        "/users/me/mfa/totp", json={}, headers=bearer(tokens["access_token"])
    )
    assert missing.status_code == 422
    anonymous = await client.post("/users/me/mfa/totp", json={"password": PASSWORD})
    assert anonymous.status_code == 401


async def test_a_pending_factor_changes_nothing_until_confirmed(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await register(client)
    tokens = await login(client)
    first = (await start(client, tokens["access_token"])).json()["secret"]
    second = (await start(client, tokens["access_token"])).json()["secret"]
    assert first != second  # a new start replaces the pending seed
    assert (await password_grant(client)).status_code == 200
    stale = await confirm(client, tokens["access_token"], code_at(first, clock()))
    assert stale.status_code == 400
    assert stale.json()["error"] == "invalid_code"
    assert (
        await confirm(client, tokens["access_token"], code_at(second, clock()))
    ).status_code == 200


async def test_confirming_ends_every_other_session_but_the_current_one(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await register(client)
    current = await login(client)
    other = await login(client)
    secret = (await start(client, current["access_token"])).json()["secret"]
    assert (
        await confirm(client, current["access_token"], code_at(secret, clock()))
    ).status_code == 200
    assert (await client.get("/users/me", headers=bearer(other["access_token"]))).status_code == 401
    refreshed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": other["refresh_token"]}
    )
    assert refreshed.status_code == 400
    assert (
        await client.get("/users/me", headers=bearer(current["access_token"]))
    ).status_code == 200
    again = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": current["refresh_token"]}
    )
    assert again.status_code == 200, again.text


async def test_confirming_twice_or_enrolling_again_is_refused(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, tokens = await enrolled_user(client, clock)
    again = await confirm(client, tokens["access_token"], code_at(secret, clock()))
    assert again.status_code == 409
    assert again.json()["error"] == "mfa_not_pending"
    restart = await start(client, tokens["access_token"])
    assert restart.status_code == 409
    assert restart.json()["error"] == "mfa_already_enabled"


async def test_password_then_code_opens_a_session_whose_tokens_say_how(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    first = await password_grant(client)
    assert first.status_code == 400
    assert first.headers["cache-control"] == "no-store"
    body = first.json()
    assert body["error"] == "mfa_required"
    assert set(body) == {"error", "error_description", "mfa_token"}
    assert "access_token" not in body
    logged_in = clock()
    response = await second_step(client, body["mfa_token"], otp=code_at(secret, clock()))
    assert response.status_code == 200, response.text
    tokens = response.json()
    claims = claims_of(tokens["access_token"])
    assert claims["amr"] == ["pwd", "otp", "mfa"]
    assert claims["acr"] == "urn:auth-service:acr:mfa"
    assert claims["auth_time"] == int(logged_in.timestamp())
    assert (
        await client.get("/users/me", headers=bearer(tokens["access_token"]))
    ).status_code == 200
    # A refresh later keeps the login's methods and time, not the refresh's.
    clock.advance(600)
    refreshed = await client.post(
        "/token", data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    again = claims_of(refreshed.json()["access_token"])
    assert again["amr"] == ["pwd", "otp", "mfa"]
    assert again["auth_time"] == int(logged_in.timestamp())


async def test_a_password_only_session_says_pwd(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await register(client)
    claims = claims_of((await login(client))["access_token"])
    assert claims["amr"] == ["pwd"]
    assert claims["acr"] == "urn:auth-service:acr:password"
    assert claims["auth_time"] == int(clock().timestamp())


async def test_a_code_is_accepted_once_and_never_an_older_one(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    code = code_at(secret, clock())
    assert (await second_step(client, await mfa_token(client), otp=code)).status_code == 200
    replay = await second_step(client, await mfa_token(client), otp=code)
    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    # The previous step's code is inside the window but older than the one used: refused.
    older = await second_step(client, await mfa_token(client), otp=code_at(secret, clock(), -1))
    assert older.status_code == 400
    clock.advance(30)
    fresh = await second_step(client, await mfa_token(client), otp=code_at(secret, clock()))
    assert fresh.status_code == 200, fresh.text


async def test_codes_one_step_away_are_accepted_two_steps_are_not(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    clock.advance(300)
    too_far = await second_step(client, await mfa_token(client), otp=code_at(secret, clock(), 2))
    assert too_far.status_code == 400
    too_old = await second_step(client, await mfa_token(client), otp=code_at(secret, clock(), -2))
    assert too_old.status_code == 400
    behind = await second_step(client, await mfa_token(client), otp=code_at(secret, clock(), -1))
    assert behind.status_code == 200, behind.text
    ahead = await second_step(client, await mfa_token(client), otp=code_at(secret, clock(), 1))
    assert ahead.status_code == 200, ahead.text


async def test_two_concurrent_uses_of_one_code_exactly_one_wins(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    code = code_at(secret, clock())
    tokens = [await mfa_token(client) for _ in range(2)]
    results = await asyncio.gather(*(second_step(client, t, otp=code) for t in tokens))
    assert sorted(r.status_code for r in results) == [200, 400]


async def test_concurrent_step_claims_in_the_repository_exactly_one_wins(
    client: httpx.AsyncClient, app: FastAPI, clock: FakeClock
) -> None:
    await enrolled_user(client, clock)
    ctx = app.state.services
    user = await ctx.db.users.by_username("alice")
    step = int(clock().timestamp()) // 30 + 5
    won = await asyncio.gather(*(ctx.db.mfa.use_step(user.id, step=step) for _ in range(8)))
    assert sorted(won) == [False] * 7 + [True]


async def test_a_wrong_code_keeps_the_mfa_token_a_right_one_spends_it(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    token = await mfa_token(client)
    wrong = code_at(secret, clock(), 5)
    assert (await second_step(client, token, otp=wrong)).status_code == 400
    assert (await second_step(client, token, otp="12345")).status_code == 400
    assert (await second_step(client, token, otp=code_at(secret, clock()))).status_code == 200
    clock.advance(30)
    reused = await second_step(client, token, otp=code_at(secret, clock()))
    assert reused.status_code == 400
    assert "mfa_token" in reused.json()["error_description"]


async def test_the_mfa_token_expires_after_five_minutes(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    token = await mfa_token(client)
    clock.advance(301)
    late = await second_step(client, token, otp=code_at(secret, clock()))
    assert late.status_code == 400
    assert late.json()["error"] == "invalid_grant"


async def test_the_mfa_token_is_bound_to_its_client(
    client: httpx.AsyncClient, app: FastAPI, clock: FakeClock
) -> None:
    from tests.test_clients import add_client

    secret, _, _ = await enrolled_user(client, clock)
    await add_client(app, "mobile", confidential=False)
    token = await mfa_token(client, client_id="mobile")
    form = {"grant_type": MFA_OTP, "mfa_token": token, "otp": code_at(secret, clock())}
    other = await client.post("/token", data=form)  # the default client
    assert other.status_code == 400
    same = await client.post("/token", data={**form, "client_id": "mobile"})
    assert same.status_code == 200, same.text


async def test_a_password_change_between_the_steps_voids_the_mfa_token(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, tokens = await enrolled_user(client, clock)
    token = await mfa_token(client)
    changed = await client.post(
        "/users/me/password",
        json={"current_password": PASSWORD, "new_password": "another long passphrase here"},
        headers=bearer(tokens["access_token"]),
    )
    assert changed.status_code == 204, changed.text
    late = await second_step(client, token, otp=code_at(secret, clock()))
    assert late.status_code == 400


async def test_a_recovery_code_logs_in_once(client: httpx.AsyncClient, clock: FakeClock) -> None:
    _, codes, _ = await enrolled_user(client, clock)
    used = await second_step(client, await mfa_token(client), recovery=codes[3].upper())
    assert used.status_code == 200, used.text
    claims = claims_of(used.json()["access_token"])
    assert claims["amr"] == ["pwd", "mfa"]
    assert claims["acr"] == "urn:auth-service:acr:mfa"
    again = await second_step(client, await mfa_token(client), recovery=codes[3])
    assert again.status_code == 400
    other = await second_step(client, await mfa_token(client), recovery=codes[4])
    assert other.status_code == 200


async def test_recovery_codes_work_for_their_own_account_only(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    _, alice_codes, _ = await enrolled_user(client, clock, "alice")
    await enrolled_user(client, clock, "bob")
    refused = await second_step(client, await mfa_token(client, "bob"), recovery=alice_codes[0])
    assert refused.status_code == 400


@pytest.mark.settings(login_max_failures_per_pair=3)
async def test_wrong_codes_are_throttled_like_passwords(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    token = await mfa_token(client)
    for _ in range(3):
        assert (await second_step(client, token, otp="000000")).status_code == 400
    throttled = await second_step(client, token, otp=code_at(secret, clock()))
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1


@pytest.mark.settings(login_max_failures_per_pair=3)
async def test_a_right_password_alone_does_not_forgive_failed_codes(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await enrolled_user(client, clock)
    for _ in range(2):
        assert (await second_step(client, await mfa_token(client), otp="000000")).status_code == 400
    token = await mfa_token(client)  # right password: must not reset the pair's failures
    assert (await second_step(client, token, otp="000000")).status_code == 400
    assert (await password_grant(client)).status_code == 429


async def test_the_seed_is_encrypted_at_rest_under_a_named_key(
    client: httpx.AsyncClient, app: FastAPI, clock: FakeClock
) -> None:
    secret, codes, _ = await enrolled_user(client, clock)
    async with direct_sql(app) as sql:
        key_id, ciphertext, user_id = (
            await sql.execute(
                text("SELECT key_id, secret_ciphertext, user_id FROM mfa_totp_factors")
            )
        ).one()
        stored_codes = (await sql.execute(text("SELECT code_hash FROM mfa_recovery_codes"))).all()
    cipher = app.state.services.accounts.cipher
    assert key_id == cipher.active_key_id
    assert secret not in ciphertext
    assert (
        cipher.open(Sealed(key_id, ciphertext), context=f"totp-secret:{user_id}") == secret.encode()
    )
    assert len(stored_codes) == 10
    assert not {c.replace("-", "") for c in codes} & {row[0] for row in stored_codes}


async def test_removing_the_factor_needs_the_password(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    secret, _, _ = await enrolled_user(client, clock)
    token = await mfa_token(client)
    tokens = (await second_step(client, token, otp=code_at(secret, clock()))).json()
    headers = bearer(tokens["access_token"])
    wrong = await client.request(
        "DELETE",
        "/users/me/mfa/totp",
        json={"password": "wrong password entirely"},
        headers=headers,
    )
    assert wrong.status_code == 400
    removed = await client.request(
        "DELETE", "/users/me/mfa/totp", json={"password": PASSWORD}, headers=headers
    )
    assert removed.status_code == 204
    assert (await password_grant(client)).status_code == 200
    gone = await client.request(
        "DELETE", "/users/me/mfa/totp", json={"password": PASSWORD}, headers=headers
    )
    assert gone.status_code == 404


async def test_an_administrator_resets_the_factor(
    client: httpx.AsyncClient, app: FastAPI, clock: FakeClock
) -> None:
    await enrolled_user(client, clock)
    ctx = app.state.services
    assert await reset_totp(ctx, "nobody") is None
    assert await reset_totp(ctx, "ALICE") is True
    assert (await password_grant(client)).status_code == 200
    assert await reset_totp(ctx, "alice") is False


async def test_second_factor_grants_refuse_missing_parameters(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    await enrolled_user(client, clock)
    token = await mfa_token(client)
    no_code = await client.post("/token", data={"grant_type": MFA_OTP, "mfa_token": token})
    assert no_code.status_code == 400
    assert no_code.json()["error"] == "invalid_request"
    no_token = await client.post("/token", data={"grant_type": MFA_RECOVERY, "recovery_code": "x"})
    assert no_token.json()["error"] == "invalid_request"
    bogus = await second_step(client, "x" * 43, otp="123456")
    assert bogus.json()["error"] == "invalid_grant"


async def test_metadata_lists_the_second_factor_grants(client: httpx.AsyncClient) -> None:
    metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
    assert {MFA_OTP, MFA_RECOVERY} <= set(metadata["grant_types_supported"])

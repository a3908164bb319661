"""Helpers for the second-factor tests: enrol with real codes computed from the secret."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

import httpx
import pyotp

from tests.conftest import PASSWORD, FakeClock, password_grant, register

MFA_OTP = "urn:auth-service:grant-type:mfa-otp"
MFA_RECOVERY = "urn:auth-service:grant-type:mfa-recovery-code"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def code_at(secret: str, when: datetime, steps: int = 0) -> str:
    """The TOTP code of the step `steps` away from `when` (what an app would show)."""
    return pyotp.TOTP(secret).at(when, counter_offset=steps)


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified (the tests check what the issuer put in)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * 4))
    return decoded


async def login(client: httpx.AsyncClient, username: str = "alice") -> dict[str, Any]:
    """A password-only login's token response (fails the test unless 200)."""
    response = await password_grant(client, username)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def start(client: httpx.AsyncClient, token: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post(
        "/users/me/mfa/totp", json={"password": password}, headers=bearer(token)
    )


async def confirm(client: httpx.AsyncClient, token: str, code: str) -> httpx.Response:
    return await client.post(
        "/users/me/mfa/totp/confirm", json={"code": code}, headers=bearer(token)
    )


async def enrolled_user(
    client: httpx.AsyncClient, clock: FakeClock, username: str = "alice"
) -> tuple[str, list[str], dict[str, Any]]:
    """Register, log in, enrol and confirm TOTP; (secret, recovery codes, token response).

    The clock moves one step on afterwards, so the confirming code is not the current one.
    """
    await register(client, username)
    tokens = await login(client, username)
    started = await start(client, tokens["access_token"])
    assert started.status_code == 200, started.text
    secret: str = started.json()["secret"]
    confirmed = await confirm(client, tokens["access_token"], code_at(secret, clock()))
    assert confirmed.status_code == 200, confirmed.text
    clock.advance(30)
    return secret, confirmed.json()["recovery_codes"], tokens


async def mfa_token(client: httpx.AsyncClient, username: str = "alice", **extra: str) -> str:
    """The mfa_token of a password step that must answer mfa_required."""
    response = await password_grant(client, username, **extra)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "mfa_required", body
    token: str = body["mfa_token"]
    return token


async def second_step(
    client: httpx.AsyncClient, token: str, *, otp: str | None = None, recovery: str | None = None
) -> httpx.Response:
    if recovery is not None:
        form = {"grant_type": MFA_RECOVERY, "mfa_token": token, "recovery_code": recovery}
    else:
        form = {"grant_type": MFA_OTP, "mfa_token": token, "otp": otp or ""}
    return await client.post("/token", data=form)

"""Step-up (RFC 9470) with auth_service.verify: demand a second factor or a recent login."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import Depends, FastAPI

from auth_service.security import authn
from auth_service.verify import (
    MFA_ACR,
    PASSWORD_ACR,
    InsufficientUserAuthenticationError,
    TokenVerifier,
    VerifiedToken,
    require_token,
)
from tests.conftest import TEST_ISSUER, FakeClock, register
from tests.mfa_helpers import code_at, enrolled_user, login, mfa_token, second_step

_PARAM = re.compile(r'([A-Za-z_]+)="((?:[^"\\]|\\.)*)"')


@pytest.fixture
def verifier(client: httpx.AsyncClient, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(TEST_ISSUER, "api", http=client, clock=lambda: clock().timestamp())


def test_the_acr_values_match_the_issuer() -> None:
    assert (PASSWORD_ACR, MFA_ACR) == (authn.ACR_PASSWORD, authn.ACR_MFA)


async def _mfa_access_token(client: httpx.AsyncClient, clock: FakeClock) -> str:
    secret, _, _ = await enrolled_user(client, clock)
    response = await second_step(client, await mfa_token(client), otp=code_at(secret, clock()))
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def test_the_verifier_reads_how_the_user_logged_in(
    client: httpx.AsyncClient, clock: FakeClock, verifier: TokenVerifier
) -> None:
    token = await _mfa_access_token(client, clock)
    verified = await verifier.verify(token, amr=["otp"], acr_values=[MFA_ACR], max_age=60)
    assert verified.amr == frozenset({"pwd", "otp", "mfa"})
    assert verified.acr == MFA_ACR
    assert verified.auth_time == int(clock().timestamp())


async def test_a_password_only_token_fails_a_second_factor_demand(
    client: httpx.AsyncClient, verifier: TokenVerifier
) -> None:
    await register(client)
    token = (await login(client))["access_token"]
    await verifier.verify(token)
    with pytest.raises(InsufficientUserAuthenticationError) as refused:
        await verifier.verify(token, acr_values=[MFA_ACR])
    assert refused.value.acr_values == (MFA_ACR,)
    with pytest.raises(InsufficientUserAuthenticationError, match="mfa"):
        await verifier.verify(token, amr=["mfa"])


async def test_an_old_login_fails_a_max_age_demand(
    client: httpx.AsyncClient, clock: FakeClock, verifier: TokenVerifier
) -> None:
    token = await _mfa_access_token(client, clock)
    clock.advance(120)
    await verifier.verify(token, max_age=300)
    with pytest.raises(InsufficientUserAuthenticationError) as refused:
        await verifier.verify(token, max_age=60)
    assert refused.value.max_age == 60


async def test_the_dependency_answers_rfc_9470_challenges(
    client: httpx.AsyncClient, clock: FakeClock, verifier: TokenVerifier
) -> None:
    resource = FastAPI()
    guarded = require_token(verifier, acr_values=[MFA_ACR], max_age=300)

    @resource.get("/payments")
    async def payments(token: VerifiedToken = Depends(guarded)) -> dict[str, str]:  # noqa: B008
        return {"sub": token.subject}

    await register(client, "bob")
    weak = (await login(client, "bob"))["access_token"]
    strong = await _mfa_access_token(client, clock)
    transport = httpx.ASGITransport(app=resource)
    async with httpx.AsyncClient(transport=transport, base_url="http://rs") as rs:
        refused = await rs.get("/payments", headers={"Authorization": f"Bearer {weak}"})
        assert refused.status_code == 401
        header = refused.headers["www-authenticate"]
        assert header.startswith("Bearer ")
        params = dict(_PARAM.findall(header))
        assert params["error"] == "insufficient_user_authentication"
        assert params["acr_values"] == MFA_ACR
        assert params["max_age"] == "300"
        allowed = await rs.get("/payments", headers={"Authorization": f"Bearer {strong}"})
        assert allowed.status_code == 200, allowed.text
        clock.advance(301)
        stale = await rs.get("/payments", headers={"Authorization": f"Bearer {strong}"})
        assert stale.status_code == 401
        assert 'error="insufficient_user_authentication"' in stale.headers["www-authenticate"]

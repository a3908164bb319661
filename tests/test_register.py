"""POST /register: username and password rules, uniqueness, and what is stored."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from auth_service.models import User
from auth_service.security.policy import PasswordPolicy
from tests.conftest import PASSWORD, at_the_argon2_floor, orm_session, password_grant, register


@at_the_argon2_floor
async def test_register_returns_the_user_without_any_hash(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    response = await client.post("/register", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "username", "created_at", "email", "email_verified"}
    assert body["username"] == "alice"
    assert "$argon2" not in response.text
    async with orm_session(app) as session:
        # By name: tests that build their own app may leave users in the shared database.
        stored = (await session.execute(select(User).where(User.username == "alice"))).scalar_one()
    assert stored.id == body["id"]
    assert stored.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert PASSWORD not in stored.password_hash


async def test_username_is_trimmed_and_nfkc_normalised(client: httpx.AsyncClient) -> None:
    body = await register(client, "  ｂｏｂ_1 ")
    assert body["username"] == "bob_1"


@pytest.mark.parametrize("duplicate", ["alice", "ALICE", " Alice ", "ａｌｉｃｅ"])
async def test_taken_username_is_409_whatever_the_case(
    client: httpx.AsyncClient, duplicate: str
) -> None:
    await register(client, "alice")
    response = await client.post("/register", json={"username": duplicate, "password": PASSWORD})
    assert response.status_code == 409
    assert response.json()["error"] == "username_taken"


@at_the_argon2_floor
async def test_concurrent_registrations_of_one_name_create_one_user(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    responses = await asyncio.gather(
        *(
            client.post("/register", json={"username": name, "password": PASSWORD})
            for name in ("carol", "Carol", "CAROL", "carol")
        )
    )
    assert sorted(r.status_code for r in responses) == [201, 409, 409, 409]
    async with orm_session(app) as session:
        carols = select(User).where(User.username_canonical == "carol")
        assert len((await session.execute(carols)).scalars().all()) == 1


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short pass", "password must be at least 15 characters"),
        ("x" * 1025, "password must be at most 1024 characters"),
        ("ManchesterUnited", "password is in a list of commonly used passwords"),
        ("Dave-the-long-name", "password must not be the username"),
    ],
)
async def test_password_policy_returns_the_reason(
    client: httpx.AsyncClient, password: str, reason: str
) -> None:
    response = await client.post(
        "/register", json={"username": "dave-the-long-name", "password": password}
    )
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_password"
    assert reason in body["reasons"]
    assert password not in response.text


async def test_every_broken_rule_is_listed(client: httpx.AsyncClient) -> None:
    response = await client.post("/register", json={"username": "erin", "password": "erin"})
    assert response.json()["reasons"] == [
        "password must be at least 15 characters",
        "password is in a list of commonly used passwords",
        "password must not be the username",
    ]


async def test_any_unicode_and_no_composition_rules(client: httpx.AsyncClient) -> None:
    await register(client, "frank", "пароль из многих слов 🔑")
    await register(client, "grace", "all lower case words only")


@pytest.mark.parametrize(
    ("username", "reason"),
    [
        ("ab", "username must be at least 3 characters"),
        ("a" * 65, "username must be at most 64 characters"),
        ("has space", "username may contain only letters, digits and . _ @ + -"),
        ("semi;colon", "username may contain only letters, digits and . _ @ + -"),
    ],
)
async def test_username_rules_return_the_reason(
    client: httpx.AsyncClient, username: str, reason: str
) -> None:
    response = await client.post("/register", json={"username": username, "password": PASSWORD})
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_username"
    assert reason in response.json()["reasons"]


async def test_missing_fields_are_422_without_echoing_input(client: httpx.AsyncClient) -> None:
    response = await client.post("/register", json={"password": PASSWORD})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert body["reasons"] == ["body.username: Field required"]
    assert PASSWORD not in response.text


# --- issue 12, item 16: one password form everywhere; confusable and weak choices --------

# 1,019 code points after NFKC (under the 1,024 maximum) but 2,009 as typed.
DECOMPOSED_PASSWORD = "correct horse battery staple " + "e\u0301" * 990


async def test_password_registered_in_decomposed_form_logs_in_and_changes(
    client: httpx.AsyncClient,
) -> None:
    await register(client, "erin", DECOMPOSED_PASSWORD)
    response = await password_grant(client, "erin", DECOMPOSED_PASSWORD)
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    change = await client.post(
        "/users/me/password",
        json={"current_password": DECOMPOSED_PASSWORD, "new_password": "a different long phrase"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert change.status_code == 204, change.text


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("alice", "ALİCE"),
        ("cope", "\u0441\u043e\u0440\u0435"),  # Latin, then an all-Cyrillic lookalike
        ("jim", "jirn"),
        ("bob1", "bobl"),
    ],
)
async def test_confusable_username_is_taken(
    client: httpx.AsyncClient, first: str, second: str
) -> None:
    await register(client, first)
    response = await client.post("/register", json={"username": second, "password": PASSWORD})
    assert response.status_code == 409, response.text
    assert response.json()["error"] == "username_taken"


async def test_mixed_script_username_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/register", json={"username": "\u0430lice", "password": PASSWORD})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_username"
    assert any("mix scripts" in reason for reason in response.json()["reasons"])


@pytest.mark.parametrize(
    "password", ["passwordpassword", "1234567890123456", "qwertyuiopasdfgh", "password1234567"]
)
async def test_guessable_fifteen_character_passwords_are_refused(
    client: httpx.AsyncClient, password: str
) -> None:
    response = await client.post("/register", json={"username": "frank", "password": password})
    assert response.status_code == 422, response.text
    assert "password is too easy to guess" in response.json()["reasons"]


async def test_password_built_on_the_service_name_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/register", json={"username": "grace", "password": "auth-service-2026"}
    )
    assert response.status_code == 422, response.text
    assert any("service name" in reason for reason in response.json()["reasons"])


async def test_account_made_before_the_script_rule_still_logs_in(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    services = app.state.services
    name = "\u0430lice"  # Cyrillic U+0430 + Latin: refused now, stored by an older version
    async with orm_session(app) as session:
        session.add(
            User(
                username=name,
                username_canonical=name.casefold(),
                username_skeleton=None,  # migration 0004 leaves NULL when a skeleton is taken
                password_hash=await services.hasher.hash(PASSWORD),
                is_active=True,
                created_at=services.clock(),
                updated_at=services.clock(),
            )
        )
    response = await password_grant(client, name, PASSWORD)
    assert response.status_code == 200, response.text


async def test_longest_skeleton_fits_the_column(client: httpx.AsyncClient) -> None:
    # A Hangul syllable has a 7-character skeleton: 64 of them are the longest name's key.
    await register(client, "\uaf66" * 64)


async def test_the_guessability_estimate_runs_off_the_event_loop(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # zxcvbn costs up to ~30 ms of CPU per password: on the loop it would stall every request.
    threads: list[int] = []
    accept = PasswordPolicy.accept

    def recording_accept(self: PasswordPolicy, raw: str, *, username: str) -> str:
        threads.append(threading.get_ident())
        return accept(self, raw, username=username)

    monkeypatch.setattr(PasswordPolicy, "accept", recording_accept)
    loop_thread = threading.get_ident()
    await register(client)
    token = (await password_grant(client)).json()["access_token"]
    changed = await client.post(
        "/users/me/password",
        headers={"Authorization": f"Bearer {token}"},
        json={"current_password": PASSWORD, "new_password": "an entirely different passphrase"},
    )
    assert changed.status_code == 204, changed.text
    assert len(threads) == 2
    assert loop_thread not in threads

"""schemathesis fuzzes every operation of a running `auth-service serve` on loopback.

The process runs the embedded backends (a migrated SQLite file, in-process state) with
AUTH_ENVIRONMENT=test. schemathesis generates valid and invalid requests from the
operation schemas of the served openapi.json (the same document as the committed one) and
runs all of its checks on every response: no 5xx, every status code, content type, header
and body documented. Protected operations get a real bearer token (scopes `profile admin`)
so they are exercised beyond 401; operations that end sessions get a fresh token of a second
user each time, so they cannot log the first one out. /introspect and /revoke get the
Basic credentials of a confidential client unless the case names a client itself.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis.errors import NoSuchExample
from schemathesis.checks import positive_data_acceptance

from auth_service.config import Settings
from auth_service.errors import InvalidEmail, InvalidUsername, PasswordRejected
from auth_service.security.emails import parse_email
from auth_service.security.keys import generate_private_key_pem
from auth_service.security.policy import (
    PasswordPolicy,
    load_common_passwords,
    normalize_password,
    normalize_username,
)
from tests.processes import Replica, migrate_schema, run_cli, service_env

pytestmark = pytest.mark.slow

COMMITTED = Path(__file__).resolve().parent.parent / "openapi.json"
START_TIMEOUT_SECONDS = 20.0
CLI_TIMEOUT_SECONDS = 60.0
# Per operation; with schemathesis's explicit-example and coverage phases the whole module
# stays well under a minute.
MAX_EXAMPLES = 15
# Operations that end sessions or change the password: each call gets a fresh token of a
# user that nothing else relies on.
DESTRUCTIVE = frozenset(
    {"POST /logout", "POST /users/me/password", "DELETE /sessions/{session_id}"}
)
CLIENT_AUTHENTICATED = frozenset({"POST /introspect", "POST /revoke"})
# Operations that re-check the password or a TOTP code the fuzzer cannot know: schema-valid
# bodies get a documented 400 (or 404/409 without a factor), never an acceptance.
REAUTHENTICATED = frozenset(
    {
        "POST /users/me/mfa/totp",
        "POST /users/me/mfa/totp/confirm",
        "DELETE /users/me/mfa/totp",
        "DELETE /users/me",
    }
)
# Accepted only with a secret the fuzzer cannot know (a mailed link's token, the current
# password, a page's CSRF token for the form variant): a schema-valid request is answered
# with a documented 400 or 403 instead.
NEEDS_A_SECRET = frozenset(
    {
        "POST /password-reset",
        "GET /email/verify",
        "POST /email/verify",
        "GET /password-reset/confirm",
        "POST /password-reset/confirm",
        "POST /users/me/email",
    }
)
# Statuses that prove an operation ran past authentication at least once.
BEYOND_AUTH = {
    "GET /users/me": {200},
    "GET /sessions": {200},
    "POST /logout": {204},
    "POST /users/me/password": {204},
    "DELETE /sessions/{session_id}": {404},
    "POST /admin/users/{username}/disable": {204, 404},
    "POST /introspect": {200},
}

schema = schemathesis.openapi.from_path(COMMITTED)
_DEFAULTS = Settings.model_fields
POLICY = PasswordPolicy(
    min_length=_DEFAULTS["password_min_length"].default,
    max_length=_DEFAULTS["password_max_length"].default,
    common_passwords=load_common_passwords(),
)


@dataclass
class Service:
    """The running process and the credentials the fuzzer uses."""

    replica: Replica
    reader_token: str
    writer: str
    writer_password: str
    client_basic: str

    def writer_token(self) -> str:
        return login(self.replica.url, self.writer, self.writer_password)


def login(url: str, username: str, password: str, scope: str = "profile") -> str:
    form = {"grant_type": "password", "username": username, "password": password, "scope": scope}
    response = httpx.post(f"{url}/token", data=form, timeout=10.0)
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    directory = tmp_path_factory.mktemp("fuzz")
    key_file = directory / "signing-es256.pem"
    key_file.write_bytes(generate_private_key_pem("ES256"))
    key_file.chmod(0o600)
    env = service_env(directory)  # the issuer: http://127.0.0.1 and the port picked
    env.update(
        {
            "AUTH_DATABASE_URL": f"sqlite+aiosqlite:///{directory / 'auth.db'}",
            "AUTH_SIGNING_KEY_FILE": str(key_file),
            "AUTH_HASH_POOL_SIZE": "2",
            "AUTH_REGISTER_MAX_PER_IP": "100000",
            "AUTH_LOG_LEVEL": "WARNING",
        }
    )
    reader = f"fuzz-reader-{secrets.token_hex(8)}"
    writer, writer_password = f"fuzz-writer-{secrets.token_hex(8)}", secrets.token_urlsafe(24)
    reader_password = secrets.token_urlsafe(24)
    migrate_schema(env)
    run_cli({**env, "AUTH_NEW_USER_PASSWORD": reader_password}, directory, "create-user", reader)
    run_cli(env, directory, "users", "set-scopes", reader, "profile", "admin")
    run_cli({**env, "AUTH_NEW_USER_PASSWORD": writer_password}, directory, "create-user", writer)
    client_id = f"fuzz-rs-{secrets.token_hex(4)}"
    added = json.loads(
        run_cli(env, directory, "clients", "add", client_id, "--confidential", "--introspection")
    )
    basic = base64.b64encode(f"{client_id}:{added['client_secret']}".encode()).decode()

    replica = Replica("fuzz", directory / "service.log")
    try:
        replica.start(env, cwd=directory)  # cwd: no developer .env is read
        replica.wait_until_healthy(time.monotonic() + START_TIMEOUT_SECONDS)
        yield Service(
            replica=replica,
            reader_token=login(replica.url, reader, reader_password, "profile admin"),
            writer=writer,
            writer_password=writer_password,
            client_basic=f"Basic {basic}",
        )
    finally:
        replica.stop()
        print(f"----- service output -----\n{replica.output()}")


def test_the_running_service_serves_the_committed_document(service: Service) -> None:
    served = httpx.get(f"{service.replica.url}/openapi.json", timeout=10.0)
    assert served.status_code == 200
    assert served.json() == json.loads(COMMITTED.read_text(encoding="utf-8"))


def _headers_for(case: Any, service: Service) -> dict[str, str]:
    label = f"{case.method.upper()} {case.path}"
    present = {name.lower() for name in (case.headers or {})}
    headers: dict[str, str] = {}
    if case.operation.definition.raw.get("security") and "authorization" not in present:
        token = service.writer_token() if label in DESTRUCTIVE else service.reader_token
        headers["Authorization"] = f"Bearer {token}"
    if label in CLIENT_AUTHENTICATED and "authorization" not in present:
        form = case.body if isinstance(case.body, dict) else {}
        if "client_id" not in form and "client_secret" not in form:
            headers["Authorization"] = service.client_basic
    return headers


def _policy_reasons(case: Any, service: Service) -> list[str] | None:
    """Why the password rules refuse this schema-valid body, or None if they accept it.

    JSON Schema cannot say "not a common password" nor "not the username", and lengths
    and characters are checked after NFKC normalisation: for such bodies the service must
    answer 422 with exactly these reasons instead of accepting them.
    """
    label = f"{case.method.upper()} {case.path}"
    body = case.body if isinstance(case.body, dict) else {}
    username, password = body.get("username"), body.get("password")
    new_password = body.get("new_password")
    try:
        # The address is checked before the password (accounts.register): no schema can
        # say what email-validator accepts.
        if label == "POST /register" and isinstance(body.get("email"), str):
            parse_email(body["email"])
        if label == "POST /register" and isinstance(username, str) and isinstance(password, str):
            POLICY.check(normalize_password(password), username=normalize_username(username))
        elif label == "POST /users/me/password" and isinstance(new_password, str):
            POLICY.check(normalize_password(new_password), username=service.writer)
    except (InvalidUsername, PasswordRejected, InvalidEmail) as exc:
        return exc.reasons
    return None


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_conforms(case: Any, service: Service) -> None:
    refused = _prepare(case, service)
    response = case.call_and_validate(
        base_url=service.replica.url,
        headers=_headers_for(case, service),
        excluded_checks=(
            [positive_data_acceptance]
            if refused or _label(case) in REAUTHENTICATED | NEEDS_A_SECRET
            else None
        ),
    )
    if refused:
        assert response.status_code == 422, response.text
        assert response.json()["reasons"] == refused
    _remember_password(case, service, response.status_code)


def _prepare(case: Any, service: Service) -> list[str] | None:
    """Give a valid password change the right current password; the policy's refusal, if any."""
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and _label(case) == "POST /users/me/password":
        # Valid data with the right current password must be accepted; a wrong one is a
        # documented 400 that says nothing about the schema.
        case.body["current_password"] = service.writer_password
    return _policy_reasons(case, service) if positive else None


def _remember_password(case: Any, service: Service, status: int) -> None:
    if _label(case) == "POST /users/me/password" and status == 204:
        service.writer_password = case.body["new_password"]


def _label(case: Any) -> str:
    return f"{case.method.upper()} {case.path}"


@pytest.mark.parametrize("label", sorted(BEYOND_AUTH))
def test_protected_operations_run_past_authentication(label: str, service: Service) -> None:
    """The fuzzer's credentials work: valid requests of each protected operation, sent with
    the headers the fuzz test sends, reach an answer beyond 401/403."""
    method, path = label.split(" ", 1)
    seen: Counter[int] = Counter()

    def past_authentication(case: Any) -> bool:
        _prepare(case, service)
        response = case.call(base_url=service.replica.url, headers=_headers_for(case, service))
        _remember_password(case, service, response.status_code)
        seen[response.status_code] += 1
        return response.status_code in BEYOND_AUTH[label]

    try:
        find(
            schema[path][method.upper()].as_strategy(),
            past_authentication,
            settings=settings(
                max_examples=MAX_EXAMPLES,
                phases=[Phase.generate],  # the first success is enough: no shrinking
                database=None,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    except NoSuchExample:
        pytest.fail(f"{label} never got past authentication: {dict(seen)}")

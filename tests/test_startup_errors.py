"""Startup refusals: one stderr line naming the variable, non-zero exit, before migrating.

Each case runs `auth-service migrate` or `serve` as a process, as an entrypoint or an
operator would; a refusal must leave the database untouched (no SQLite file created).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from auth_service.config import Settings
from auth_service.startup import StartupRefused, check_keys
from tests.conftest import REDIS_TEST_URL
from tests.processes import CLI_TIMEOUT_SECONDS, Replica, closed_port, run_cli, service_env

pytestmark = pytest.mark.slow  # every test runs `auth-service` processes


def run(directory: Path, command: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """`auth-service COMMAND` with a test environment plus `settings`, to completion."""
    env = service_env(directory / "data", **settings)
    return subprocess.run(
        [sys.executable, "-m", "auth_service", command],
        env=env,
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )


def assert_refused(completed: subprocess.CompletedProcess[str], variable: str, *words: str) -> str:
    """Exit non-zero with exactly one stderr line that names `variable` and `words`."""
    lines = completed.stderr.splitlines()
    assert completed.returncode != 0, completed.stderr
    assert len(lines) == 1, completed.stderr
    (line,) = lines
    assert line.startswith("auth-service: ")
    assert variable in line, line
    for word in words:
        assert word in line, line
    assert completed.stdout == ""
    return line


def assert_not_migrated(directory: Path) -> None:
    assert not (directory / "data" / "auth.db").exists()


def write_pem(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


# --- settings that cannot be parsed or are out of range -------------------------------


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_non_json_trusted_proxies(tmp_path: Path, command: str) -> None:
    completed = run(tmp_path, command, AUTH_TRUSTED_PROXIES="10.0.0.1")
    assert_refused(completed, "AUTH_TRUSTED_PROXIES", "JSON list")
    assert completed.returncode == 2
    assert_not_migrated(tmp_path)


def test_a_range_violation(tmp_path: Path) -> None:
    completed = run(tmp_path, "migrate", AUTH_ACCESS_TOKEN_TTL_SECONDS="-5")
    assert_refused(completed, "AUTH_ACCESS_TOKEN_TTL_SECONDS", "greater than or equal to 30")
    assert_not_migrated(tmp_path)


def test_several_problems_still_make_one_line(tmp_path: Path) -> None:
    completed = run(tmp_path, "serve", AUTH_ENVIRONMENT="production")
    line = assert_refused(completed, "AUTH_REDIS_URL", "AUTH_SIGNING_KEY_FILE")
    assert "AUTH_TRUSTED_PROXIES" in line


@pytest.mark.parametrize(
    "url",
    [
        "postgres://postgres:hunter2@127.0.0.1:5432/auth",
        "postgresql://postgres:hunter2@127.0.0.1:5432/auth",
    ],
)
def test_a_database_url_without_asyncpg(tmp_path: Path, url: str) -> None:
    completed = run(tmp_path, "migrate", AUTH_DATABASE_URL=url)
    line = assert_refused(completed, "AUTH_DATABASE_URL", "postgresql+asyncpg://")
    assert "hunter2" not in line


def test_a_redis_url_without_a_scheme(tmp_path: Path) -> None:
    completed = run(tmp_path, "migrate", AUTH_REDIS_URL="127.0.0.1:6379")
    assert_refused(completed, "AUTH_REDIS_URL", "redis://")
    assert_not_migrated(tmp_path)


# --- the database cannot be reached ------------------------------------------------------


def test_an_unreachable_database_at_migrate(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{closed_port()}/auth"
    # No waiting (test_startup_wait covers the retries): one attempt, then one line.
    completed = run(tmp_path, "migrate", AUTH_DATABASE_URL=url, AUTH_STARTUP_WAIT_SECONDS="0")
    line = assert_refused(completed, "AUTH_DATABASE_URL", "cannot connect", "127.0.0.1")
    assert "hunter2" not in line


# --- key files -------------------------------------------------------------------------


def _encrypted(path: Path) -> Path:
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    return path


def _public_only(path: Path) -> Path:
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


def _rsa(path: Path) -> Path:
    return write_pem(path, rsa.generate_private_key(public_exponent=65537, key_size=2048))


def _directory(path: Path) -> Path:
    path.mkdir()
    return path


@pytest.mark.parametrize(
    ("make_key", "words"),
    [
        pytest.param(lambda path: path, ("does not exist",), id="missing"),
        pytest.param(_directory, ("is a directory",), id="directory"),
        pytest.param(_encrypted, ("encrypted",), id="encrypted"),
        pytest.param(_public_only, ("not a PEM private key",), id="public-key"),
        pytest.param(_rsa, ("ES256", "RSA", "AUTH_SIGNING_ALGORITHM"), id="wrong-type"),
    ],
)
@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_a_bad_signing_key_file(
    tmp_path: Path, command: str, make_key: object, words: tuple[str, ...]
) -> None:
    key = make_key(tmp_path / "signing.pem")  # type: ignore[operator]
    # Two workers: the supervisor used to start, the workers died, and it exited 0.
    completed = run(
        tmp_path,
        command,
        AUTH_SIGNING_KEY_FILE=str(key),
        AUTH_WORKERS="2",
        AUTH_REDIS_URL=REDIS_TEST_URL,
    )
    line = assert_refused(completed, "AUTH_SIGNING_KEY_FILE", str(key), *words)
    assert completed.returncode == 2
    assert "passphrase" not in line
    assert_not_migrated(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_signing_key_file(tmp_path: Path) -> None:
    key = write_pem(tmp_path / "signing.pem", ec.generate_private_key(ec.SECP256R1()))
    key.chmod(0)
    completed = run(tmp_path, "migrate", AUTH_SIGNING_KEY_FILE=str(key))
    assert_refused(completed, "AUTH_SIGNING_KEY_FILE", "not readable")
    assert_not_migrated(tmp_path)


def test_a_keys_dir_missing_a_listed_key(tmp_path: Path) -> None:
    keys = _directory(tmp_path / "keys")
    record = {"kid": "abc", "algorithm": "ES256", "state": "active", "created_at": "2026-01-01"}
    (keys / "keyset.json").write_text(json.dumps({"keys": [record]}))
    completed = run(tmp_path, "migrate", AUTH_KEYS_DIR=str(keys))
    assert_refused(completed, "AUTH_KEYS_DIR", "No such file", "abc.pem")
    assert_not_migrated(tmp_path)


def test_an_empty_keys_dir_is_fine_as_the_first_start_fills_it(tmp_path: Path) -> None:
    keys = _directory(tmp_path / "keys")
    completed = run(tmp_path, "migrate", AUTH_KEYS_DIR=str(keys))
    assert completed.returncode == 0, completed.stderr


def test_a_good_signing_key_file_migrates(tmp_path: Path) -> None:
    key = write_pem(tmp_path / "signing.pem", ec.generate_private_key(ec.SECP256R1()))
    completed = run(tmp_path, "migrate", AUTH_SIGNING_KEY_FILE=str(key))
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "data" / "auth.db").exists()


# --- misspelled variables ----------------------------------------------------------------


def test_a_misspelled_variable_is_warned_about_with_the_closest_name(tmp_path: Path) -> None:
    completed = run(tmp_path, "migrate", AUTH_ACESS_TOKEN_TTL_SECONDS="60")
    assert completed.returncode == 0, completed.stderr
    first = completed.stderr.splitlines()[0]
    assert first == (
        "auth-service: warning: AUTH_ACESS_TOKEN_TTL_SECONDS is not a setting; "
        "did you mean AUTH_ACCESS_TOKEN_TTL_SECONDS?"
    )


def test_a_misspelled_variable_in_dot_env_is_warned_about(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("AUTH_REDIS_URI=redis://127.0.0.1:6379/0\n")
    completed = run(tmp_path, "migrate")
    assert completed.returncode == 0, completed.stderr
    assert "did you mean AUTH_REDIS_URL?" in completed.stderr.splitlines()[0]


def test_an_unreadable_key_file_is_named_even_when_tests_run_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = write_pem(tmp_path / "signing.pem", ec.generate_private_key(ec.SECP256R1()))

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    settings = Settings(_env_file=None, signing_key_file=key)
    with pytest.raises(StartupRefused, match=r"AUTH_SIGNING_KEY_FILE: .* is not readable"):
        check_keys(settings)


def test_a_worker_failing_its_startup_makes_serve_exit_non_zero(tmp_path: Path) -> None:
    # Passes the checks (a missing key directory is created at first start), but the
    # workers cannot create it under a regular file: their lifespan fails.
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    assert run(tmp_path, "migrate").returncode == 0  # serve refuses an unmigrated database
    completed = run(
        tmp_path,
        "serve",
        AUTH_KEYS_DIR=str(blocker / "keys"),
        AUTH_WORKERS="2",
        AUTH_REDIS_URL=REDIS_TEST_URL,
    )
    assert completed.returncode == 3, completed.stderr
    assert "failed to start" in completed.stderr


def test_sigterm_still_stops_two_workers_with_exit_0(tmp_path: Path) -> None:
    env = service_env(tmp_path / "data", AUTH_WORKERS="2", AUTH_REDIS_URL=REDIS_TEST_URL)
    run_cli(env, tmp_path, "migrate")
    replica = Replica("two-workers", tmp_path / "serve.log")
    replica.start(env, cwd=tmp_path)
    try:
        replica.wait_until_healthy(time.monotonic() + 30)
        assert replica.process is not None
        replica.process.send_signal(signal.SIGTERM)
        assert replica.process.wait(timeout=30) == 0, replica.output()
    finally:
        replica.stop()

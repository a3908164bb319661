"""Settings: defaults, derived values, AUTH_* variables, and refusal of insecure values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from auth_service.config import Settings, unknown_variable_warnings

PRODUCTION: dict[str, Any] = {
    "environment": "production",
    "signing_key_file": Path("/run/secrets/signing.pem"),
    "data_encryption_key_file": Path("/run/secrets/data-encryption.key"),
    "redis_url": "redis://redis:6379/0",
    "database_url": "postgresql+asyncpg://auth@db/auth",
    "issuer": "https://auth.example.com",
    "trusted_proxies": [],
}

KEY_FILE_PROBLEM = "production needs AUTH_SIGNING_KEY_FILE"
REDIS_PROBLEM = "production needs AUTH_REDIS_URL"
DATABASE_PROBLEM = "production needs AUTH_DATABASE_URL pointing at PostgreSQL"
ISSUER_PROBLEM = "production needs an https:// AUTH_ISSUER"
ARGON2_PROBLEM = "argon2 parameters are below OWASP's minimum"
PROXIES_PROBLEM = "production needs AUTH_TRUSTED_PROXIES set explicitly"
DATA_KEY_PROBLEM = "production needs AUTH_DATA_ENCRYPTION_KEY_FILE"
ALL_PRODUCTION_PROBLEMS = (
    KEY_FILE_PROBLEM,
    DATA_KEY_PROBLEM,
    REDIS_PROBLEM,
    DATABASE_PROBLEM,
    ISSUER_PROBLEM,
    PROXIES_PROBLEM,
)


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def refusal(**values: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        settings(**values)
    return str(caught.value)


# --- defaults and derived values -----------------------------------------------------


def test_defaults() -> None:
    config = settings()
    assert config.environment == "development"
    assert (config.host, config.port) == ("127.0.0.1", 8000)
    assert config.issuer is None
    assert config.effective_issuer == "http://127.0.0.1:8000"
    assert config.data_dir == Path("var")
    assert config.effective_database_url == (
        f"sqlite+aiosqlite:///{(Path('var') / 'auth.db').resolve()}"
    )
    assert config.audience == "api"
    assert config.access_token_ttl_seconds == 900
    assert config.clock_leeway_seconds == 10
    assert config.signing_algorithm == "ES256"
    assert (config.password_min_length, config.password_max_length) == (15, 1024)
    # RFC 9106's second recommended option, the argon2-cffi / passlib / pwdlib default.
    assert config.password_hash_memory_kib == 65536
    assert config.password_hash_time_cost == 3
    assert config.password_hash_parallelism == 4
    assert config.hash_pool_size >= 1
    assert config.database_pool_size == 20
    assert config.is_development_setup is True


def test_sqlite_url_is_an_absolute_path_under_data_dir(tmp_path: Path) -> None:
    config = settings(data_dir=tmp_path / "data")
    expected = f"sqlite+aiosqlite:///{(tmp_path / 'data').resolve()}/auth.db"
    assert config.effective_database_url == expected
    assert Path(config.effective_database_url.removeprefix("sqlite+aiosqlite:///")).is_absolute()


def test_explicit_database_url_wins(tmp_path: Path) -> None:
    url = "postgresql+asyncpg://auth@db/auth"
    assert settings(data_dir=tmp_path, database_url=url).effective_database_url == url


def test_issuer_is_derived_from_host_and_port() -> None:
    chosen = settings(host="0.0.0.0", port=9000, management_port=9001)
    assert chosen.effective_issuer == "http://0.0.0.0:9000"


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        ("https://auth.example.com", "https://auth.example.com"),
        ("https://auth.example.com/", "https://auth.example.com"),
        ("https://example.com/auth//", "https://example.com/auth"),
    ],
)
def test_explicit_issuer_loses_trailing_slashes(issuer: str, expected: str) -> None:
    assert settings(issuer=issuer).effective_issuer == expected


@pytest.mark.parametrize("port", [65536, -1])
def test_port_out_of_range_is_refused(port: int) -> None:
    assert "port" in refusal(port=port)


def test_port_zero_asks_the_kernel_for_both_ports() -> None:
    config = settings(port=0, management_port=0)  # two picks, never the same port
    assert (config.port, config.management_port) == (0, 0)
    assert "AUTH_MANAGEMENT_PORT must differ" in refusal(port=9000, management_port=9000)


# --- production ----------------------------------------------------------------------


def test_complete_production_configuration_is_accepted() -> None:
    config = settings(**PRODUCTION)
    assert config.environment == "production"
    assert config.is_development_setup is False
    assert config.effective_issuer == "https://auth.example.com"


def test_production_with_nothing_configured_lists_every_problem() -> None:
    message = refusal(environment="production")
    assert "refusing insecure configuration" in message
    for problem in ALL_PRODUCTION_PROBLEMS:
        assert problem in message


@pytest.mark.parametrize(
    ("override", "problem"),
    [
        pytest.param({"signing_key_file": None}, KEY_FILE_PROBLEM, id="no-key-file"),
        pytest.param(
            {"data_encryption_key_file": None}, DATA_KEY_PROBLEM, id="no-data-encryption-key"
        ),
        pytest.param({"redis_url": None}, REDIS_PROBLEM, id="no-redis"),
        pytest.param({"database_url": None}, DATABASE_PROBLEM, id="no-database"),
        pytest.param(
            {"database_url": "sqlite+aiosqlite:////srv/auth.db"}, DATABASE_PROBLEM, id="sqlite"
        ),
        pytest.param({"issuer": "http://auth.example.com"}, ISSUER_PROBLEM, id="http-issuer"),
        pytest.param({"issuer": None}, ISSUER_PROBLEM, id="derived-http-issuer"),
        pytest.param({"redis_url": ""}, REDIS_PROBLEM, id="empty-redis"),
        pytest.param({"database_url": ""}, DATABASE_PROBLEM, id="empty-database"),
        pytest.param({"issuer": ""}, ISSUER_PROBLEM, id="empty-issuer"),
    ],
)
def test_production_refuses_each_insecure_value(override: dict[str, Any], problem: str) -> None:
    message = refusal(**{**PRODUCTION, **override})
    assert problem in message
    for other in ALL_PRODUCTION_PROBLEMS:
        if other != problem:
            assert other not in message


def test_development_allows_the_embedded_stand_ins() -> None:
    config = settings(environment="development", issuer="http://localhost:8000")
    assert config.signing_key_file is None
    assert config.redis_url is None
    assert config.effective_database_url.startswith("sqlite+aiosqlite:///")
    assert config.is_development_setup is True


# --- passwords -----------------------------------------------------------------------


@pytest.mark.parametrize("length", [7, 0, -1])
def test_password_min_length_below_8_is_refused(length: int) -> None:
    message = refusal(password_min_length=length)
    assert "password_min_length" in message


def test_password_min_length_of_8_is_accepted() -> None:
    assert settings(password_min_length=8).password_min_length == 8


def test_password_max_length_bounds() -> None:
    assert "password_max_length" in refusal(password_max_length=63)
    assert "password_max_length" in refusal(password_max_length=1025)
    assert settings(password_max_length=64).password_max_length == 64


def test_password_min_length_above_max_is_refused() -> None:
    message = refusal(password_min_length=100, password_max_length=64)
    assert "AUTH_PASSWORD_MIN_LENGTH is above AUTH_PASSWORD_MAX_LENGTH" in message


@pytest.mark.parametrize("environment", ["development", "production"])
@pytest.mark.parametrize(
    "weak",
    [
        pytest.param({"password_hash_memory_kib": 19455}, id="memory-19455"),
        pytest.param({"password_hash_memory_kib": 8}, id="memory-8"),
        pytest.param({"password_hash_time_cost": 1}, id="time-cost-1"),
    ],
)
def test_argon2_below_owasp_minimum_is_refused_outside_test(
    environment: str, weak: dict[str, int]
) -> None:
    base = PRODUCTION if environment == "production" else {}
    message = refusal(**{**base, "environment": environment, **weak})
    assert ARGON2_PROBLEM in message


def test_argon2_below_owasp_minimum_is_allowed_in_test() -> None:
    config = settings(
        environment="test",
        password_hash_memory_kib=8,
        password_hash_time_cost=1,
        password_hash_parallelism=1,
    )
    assert (config.password_hash_memory_kib, config.password_hash_time_cost) == (8, 1)


def test_argon2_memory_below_8_kib_per_lane_is_refused_up_front() -> None:
    message = refusal(environment="test", password_hash_memory_kib=8, password_hash_parallelism=4)
    assert "at least 8 x AUTH_PASSWORD_HASH_PARALLELISM" in message


def test_argon2_at_the_owasp_minimum_is_accepted() -> None:
    config = settings(password_hash_memory_kib=19456, password_hash_time_cost=2)
    assert config.password_hash_memory_kib == 19456


# --- environment variables -----------------------------------------------------------


def test_auth_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_PORT", "9001")
    monkeypatch.setenv("AUTH_HOST", "10.0.0.5")
    monkeypatch.setenv("AUTH_ENVIRONMENT", "test")
    monkeypatch.setenv("AUTH_PASSWORD_MIN_LENGTH", "20")
    monkeypatch.setenv("AUTH_HASH_POOL_SIZE", "3")
    monkeypatch.setenv("AUTH_SIGNING_ALGORITHM", "RS256")
    monkeypatch.setenv("AUTH_REDIS_URL", "redis://cache:6379/1")
    config = settings()
    assert config.port == 9001
    assert config.host == "10.0.0.5"
    assert config.environment == "test"
    assert config.password_min_length == 20
    assert config.hash_pool_size == 3
    assert config.signing_algorithm == "RS256"
    assert config.redis_url == "redis://cache:6379/1"
    assert config.effective_issuer == "http://10.0.0.5:9001"


def test_environment_variable_names_are_case_insensitive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("auth_port", "9002")
    assert settings().port == 9002


def test_unprefixed_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9003")
    monkeypatch.setenv("HOST", "0.0.0.0")
    config = settings()
    assert (config.host, config.port) == ("127.0.0.1", 8000)


def test_keyword_arguments_win_over_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_PORT", "9004")
    assert settings(port=9005).port == 9005


def test_invalid_environment_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_PORT", "not-a-port")
    assert "port" in refusal()


def test_production_refusal_applies_to_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_ENVIRONMENT", "production")
    monkeypatch.setenv("AUTH_ISSUER", "http://auth.example.com")
    message = refusal()
    assert ISSUER_PROBLEM in message
    assert KEY_FILE_PROBLEM in message


def test_env_file_is_read_when_given(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AUTH_PORT=9006\nAUTH_AUDIENCE=orders\nAUTH_UNKNOWN_KNOB=1\n")
    config = Settings(_env_file=env_file)
    assert config.port == 9006
    assert config.audience == "orders"


def test_key_rotation_faster_than_the_jwks_cache_is_refused() -> None:
    with pytest.raises(ValidationError, match="must exceed AUTH_JWKS_MAX_AGE_SECONDS"):
        Settings(_env_file=None, key_rotation_interval_seconds=300, jwks_max_age_seconds=300)
    ok = Settings(_env_file=None, key_rotation_interval_seconds=3600)
    assert ok.key_rotation_interval_seconds == 3600


# --- empty means unset ---------------------------------------------------------------

OPTIONAL_VARIABLES = [
    "AUTH_DATABASE_URL",
    "AUTH_REDIS_URL",
    "AUTH_ISSUER",
    "AUTH_SIGNING_KEY_FILE",
    "AUTH_KEYS_DIR",
    "AUTH_KEY_ROTATION_INTERVAL_SECONDS",
]


@pytest.mark.parametrize("variable", OPTIONAL_VARIABLES)
def test_an_empty_optional_variable_means_unset(
    variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, "")
    assert getattr(settings(), variable.removeprefix("AUTH_").lower()) is None


def test_an_empty_variable_with_a_default_keeps_the_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_PORT", "")
    monkeypatch.setenv("AUTH_REDIS_KEY_PREFIX", "")
    config = settings()
    assert (config.port, config.redis_key_prefix) == (8000, "auth:")


def test_empty_keyword_values_mean_unset_too() -> None:
    config = settings(redis_url="", signing_key_file="", database_url="")
    assert (config.redis_url, config.signing_key_file, config.database_url) == (None, None, None)
    assert config.is_development_setup is True


def test_empty_redis_url_with_two_workers_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Found in the wild: AUTH_REDIS_URL= started 2 workers with per-worker memory denylists.
    monkeypatch.setenv("AUTH_REDIS_URL", "")
    monkeypatch.setenv("AUTH_WORKERS", "2")
    assert "AUTH_WORKERS above 1 needs AUTH_REDIS_URL" in refusal()


def test_empty_redis_url_in_production_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_REDIS_URL", "")
    message = refusal(**{k: v for k, v in PRODUCTION.items() if k != "redis_url"}, workers=2)
    assert REDIS_PROBLEM in message


# --- trusted proxies -------------------------------------------------------------------


def test_production_needs_trusted_proxies_set_explicitly() -> None:
    without = {k: v for k, v in PRODUCTION.items() if k != "trusted_proxies"}
    message = refusal(**without)
    assert PROXIES_PROBLEM in message
    assert "[] when clients connect directly" in message


def test_production_accepts_an_explicit_empty_list_of_proxies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_TRUSTED_PROXIES", "[]")
    without = {k: v for k, v in PRODUCTION.items() if k != "trusted_proxies"}
    assert settings(**without).trusted_proxies == []


def test_production_with_an_empty_proxies_variable_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTH_TRUSTED_PROXIES", "")
    without = {k: v for k, v in PRODUCTION.items() if k != "trusted_proxies"}
    assert PROXIES_PROBLEM in refusal(**without)


def test_trusted_proxies_are_read_as_a_json_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_TRUSTED_PROXIES", '["10.0.0.0/8", "192.0.2.7"]')
    assert [str(net) for net in settings().trusted_proxies] == ["10.0.0.0/8", "192.0.2.7/32"]


@pytest.mark.parametrize("value", ["10.0.0.1", "10.0.0.0/8,10.1.0.0/16", "[10.0.0.1]", '"x"'])
def test_non_json_trusted_proxies_are_refused_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTH_TRUSTED_PROXIES", value)
    with pytest.raises(ValidationError) as caught:
        settings()
    (error,) = caught.value.errors()
    assert error["loc"] == ("trusted_proxies",)
    assert "JSON list" in error["msg"]


# --- URLs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("postgres://auth:pw@db/auth", "postgresql+asyncpg://"),
        ("postgresql://auth:pw@db/auth", "postgresql+asyncpg://"),
        ("postgresql+psycopg://auth:pw@db/auth", "postgresql+asyncpg://"),
        ("sqlite:////srv/auth.db", "sqlite+aiosqlite://"),
        ("mysql://auth:pw@db/auth", "postgresql+asyncpg://"),
        ("db:5432/auth", "postgresql+asyncpg://"),
    ],
)
def test_database_url_without_the_async_driver_is_refused(url: str, hint: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(database_url=url)
    (error,) = caught.value.errors()
    assert error["loc"] == ("database_url",)
    assert hint in error["msg"]
    assert "pw" not in error["msg"]  # the password is never echoed


@pytest.mark.parametrize(
    "url",
    ["postgresql+asyncpg://auth@db/auth", "sqlite+aiosqlite:////srv/auth.db"],
)
def test_database_urls_with_the_async_drivers_are_accepted(url: str) -> None:
    assert settings(database_url=url).database_url == url


@pytest.mark.parametrize("url", ["127.0.0.1:6379", "redis:6379/0", "http://redis:6379"])
def test_redis_url_without_a_redis_scheme_is_refused(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(redis_url=url)
    (error,) = caught.value.errors()
    assert error["loc"] == ("redis_url",)
    assert "redis://" in error["msg"]


@pytest.mark.parametrize(
    "url", ["redis://redis:6379/0", "rediss://:pw@redis:6380/1", "unix:///run/redis.sock"]
)
def test_redis_urls_with_a_scheme_are_accepted(url: str) -> None:
    assert settings(redis_url=url).redis_url == url


# --- misspelled variables ---------------------------------------------------------------


def test_misspelled_variables_are_named_with_the_closest_setting() -> None:
    environ = {
        "AUTH_ACESS_TOKEN_TTL_SECONDS": "60",
        "AUTH_REDIS_URI": "redis://x",
        "AUTH_PORT": "9000",
        "auth_trusted_proxy": "[]",
        "AUTH_MIGRATE_ON_START": "true",
        "AUTH_NEW_USER_PASSWORD": "x",
        "AUTH_TEST_POSTGRES_DSN": "postgresql://x",
        "AUTH_QQQQ": "1",
        "PATH": "/bin",
    }
    assert unknown_variable_warnings(environ) == [
        "AUTH_ACESS_TOKEN_TTL_SECONDS is not a setting; "
        "did you mean AUTH_ACCESS_TOKEN_TTL_SECONDS?",
        "AUTH_QQQQ is not a setting (ignored)",
        "AUTH_REDIS_URI is not a setting; did you mean AUTH_REDIS_URL?",
        "AUTH_TRUSTED_PROXY is not a setting; did you mean AUTH_TRUSTED_PROXIES?",
    ]

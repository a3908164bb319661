"""One `serve` per embedded data dir; one-shot CLI commands still work beside it.

Two servers with in-process revocation state on one data dir would not see each other's
logouts, so the second is refused with a message naming AUTH_REDIS_URL. The CLI's
`users disable` beside a running server still takes effect there (the change marker).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from auth_service.cli import main
from auth_service.instance_lock import DataDirInUse, exclusive_data_dir
from tests.conftest import PASSWORD, REDIS_TEST_URL
from tests.processes import Replica, run_cli, running_service, service_env

EXIT_TIMEOUT_SECONDS = 20.0


def test_the_lock_is_exclusive_and_released_at_the_end(tmp_path: Path) -> None:
    with exclusive_data_dir(tmp_path):
        with pytest.raises(DataDirInUse) as refused, exclusive_data_dir(tmp_path):
            pass
        assert "AUTH_REDIS_URL" in str(refused.value)
        assert refused.value.holder.isdigit()  # the holder's pid
    with exclusive_data_dir(tmp_path):
        pass


@pytest.mark.parametrize("redis_url", [None, REDIS_TEST_URL])
def test_serve_locks_the_data_dir_only_without_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str | None
) -> None:
    from auth_service import server

    served: list[object] = []

    def serve(settings: object, _: object) -> int:
        served.append(settings)
        return 0

    monkeypatch.setattr(server, "serve", serve)
    monkeypatch.setenv("AUTH_DATA_DIR", str(tmp_path))
    if redis_url is not None:
        monkeypatch.setenv("AUTH_REDIS_URL", redis_url)
    with exclusive_data_dir(tmp_path):  # as if another `serve` held it
        if redis_url is None:
            with pytest.raises(SystemExit):
                main(["serve"])
        else:
            assert main(["serve"]) == 0
    assert len(served) == (0 if redis_url is None else 1)


@pytest.mark.slow
def test_a_second_server_on_the_data_dir_is_refused_and_the_cli_still_works(
    tmp_path: Path,
) -> None:
    env = service_env(tmp_path)
    with running_service("first", env, tmp_path) as first:
        second = Replica("second", tmp_path / "second.log")
        second.start(env, cwd=tmp_path)
        assert second.process is not None
        try:
            code = second.process.wait(timeout=EXIT_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            second.stop()
            pytest.fail("a second `serve` on the same data dir kept running:\n" + second.output())
        assert code != 0
        assert "AUTH_REDIS_URL" in second.output()

        with httpx.Client(base_url=first.url, timeout=10) as client:
            account = {"username": "alice", "password": PASSWORD}
            assert client.post("/register", json=account).status_code == 201
            form = {"grant_type": "password", "username": "alice", "password": PASSWORD}
            grant = client.post("/token", data=form)
            assert grant.status_code == 200, grant.text
            headers = {"Authorization": f"Bearer {grant.json()['access_token']}"}
            assert client.get("/users/me", headers=headers).status_code == 200
            run_cli(env, tmp_path, "users", "disable", "alice")
            refused = client.get("/users/me", headers=headers)
            assert refused.status_code == 401, refused.text

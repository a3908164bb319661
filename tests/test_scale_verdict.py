"""The scale-test's verdict: which failures inside a fault window it accepts."""

from __future__ import annotations

from typing import Any

from tests.scale.verdict import Window, judge

FINAL: dict[str, Any] = {
    "revoked_at": {},
    "dead_refresh_at": {},
    "cannot_log_in": [],
    "revoked_accepted": [],
    "rotated_accepted": [],
    "registered": 0,
    "revoked_probed": 0,
    "rotated_probed": 0,
}


def _me(t0: float, status: int | None, **extra: Any) -> dict[str, Any]:
    return {"op": "me", "t0": t0, "t1": t0 + 0.5, "status": status, "token": None, **extra}


def _checks(records: list[dict[str, Any]], window: Window) -> set[str]:
    return set(judge(records, FINAL, [window]).failures)


def test_a_request_in_flight_when_a_replica_is_killed_is_counted_not_failed() -> None:
    kill = Window("kill_replica", 100.0, 110.0, zero_failures=False, lossy=True)
    verdict = judge([_me(100.2, None), _me(101.0, 200)], FINAL, [kill])
    assert verdict.failures == {}
    assert verdict.table[0]["lost_in_flight"] == 1
    assert verdict.table[0]["other_failures"] == 0


def test_a_closed_connection_long_after_the_kill_is_a_failure() -> None:
    kill = Window("kill_replica", 100.0, 110.0, zero_failures=False, lossy=True)
    assert _checks([_me(106.0, None)], kill) == {
        "transport error inside a fault window (only 503 + Retry-After allowed)"
    }


def test_a_500_is_a_failure_even_in_a_lossy_window() -> None:
    kill = Window("link_cut", 100.0, 110.0, zero_failures=False, lossy=True)
    assert _checks([_me(100.1, 500, retry_after=False)], kill) == {
        "status 500 inside a fault window (only 503 + Retry-After allowed)"
    }


def test_the_rolling_restart_allows_no_closed_connection() -> None:
    rolling = Window("rolling_restart", 100.0, 110.0, zero_failures=True)
    assert _checks([_me(100.1, None)], rolling) == {
        "failed request during rolling_restart (zero allowed)"
    }


def test_a_replayed_logout_refused_right_after_the_kill_is_counted_not_failed() -> None:
    """HAProxy resends a request the killed replica never answered; if that replica had
    already ended the session, the resent logout is refused (401): the answer was lost."""
    kill = Window("kill_replica", 100.0, 110.0, zero_failures=False, lossy=True)
    logout = {"op": "logout", "t0": 100.1, "t1": 100.4, "status": 401, "token": None}
    verdict = judge([logout], FINAL, [kill])
    assert verdict.failures == {}
    assert verdict.table[0]["lost_in_flight"] == 1
    late = {**logout, "t0": 105.0, "t1": 105.3}
    assert _checks([late], kill) == {
        "status 401 inside a fault window (only 503 + Retry-After allowed)"
    }


def _replay(t0: float, status: int) -> dict[str, Any]:
    return {"op": "replay_access", "t0": t0, "t1": t0 + 0.1, "status": status, "token": "j1"}


def test_a_revoked_token_accepted_before_the_partial_loss_is_repaired_is_counted() -> None:
    loss = Window("redis_partial_loss", 100.0, 102.0, zero_failures=False, revocations_lost=True)
    final = {**FINAL, "revoked_at": {"j1": 50.0}}
    verdict = judge([_replay(101.0, 200), _replay(110.0, 401)], final, [loss])
    assert verdict.failures == {}
    assert verdict.table[0]["revoked_accepted"] == 1
    assert verdict.table[0]["other_failures"] == 0


def test_a_revoked_token_accepted_after_the_repair_is_a_failure() -> None:
    loss = Window("redis_partial_loss", 100.0, 102.0, zero_failures=False, revocations_lost=True)
    other = Window("redis_failover", 100.0, 102.0, zero_failures=False)
    final = {**FINAL, "revoked_at": {"j1": 50.0}}
    assert "revoked access token accepted" in judge([_replay(102.5, 200)], final, [loss]).failures
    assert "revoked access token accepted" in judge([_replay(101.0, 200)], final, [other]).failures


def test_a_fault_window_without_requests_fails_the_run() -> None:
    idle = Window("key_rotation", 100.0, 110.0, zero_failures=True)
    assert _checks([_me(200.0, 200)], idle) == {
        "no request during a fault window (it proves nothing)"
    }


def test_haproxys_504_for_a_request_sent_as_the_link_was_cut_is_counted_not_failed() -> None:
    cut = Window("link_cut", 100.0, 110.0, zero_failures=False, lossy=True)
    late = Window("redis_failover", 100.0, 110.0, zero_failures=False)
    in_flight = {**_me(99.96, 504, retry_after=False), "t1": 110.0}
    verdict = judge([in_flight], FINAL, [cut])
    assert verdict.failures == {}
    assert verdict.table[0]["lost_in_flight"] == 1
    assert _checks([in_flight], late) == {
        "status 504 inside a fault window (only 503 + Retry-After allowed)"
    }
    assert _checks([_me(106.0, 504, retry_after=False)], cut) == {
        "status 504 inside a fault window (only 503 + Retry-After allowed)"
    }

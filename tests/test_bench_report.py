"""The bench's typed results cross the worker pipe and render into the report table."""

from __future__ import annotations

from bench.load import Job, Latency, LoadResult, RequestSpec, summarize
from bench.plan import READ_ENDPOINTS, HashParams, Plan
from bench.report import render_markdown
from bench.results import (
    BackendResult,
    BenchResults,
    Ceiling,
    CeilingSummary,
    Cell,
    CodeFlowCell,
    EnumerationTiming,
    LoginCell,
    Meta,
    PeakRss,
    ServerCpu,
    Skipped,
)

C = ("1", "4", "16", "64")


def _load(ok_per_s: float, statuses: dict[str, int] | None = None) -> LoadResult:
    return LoadResult(
        concurrency=4,
        measured_s=1.0,
        ok=int(ok_per_s),
        ok_per_s=ok_per_s,
        statuses=statuses or {"200": int(ok_per_s)},
        errors={},
        sent=int(ok_per_s),
        responses_total=int(ok_per_s),
        wall_s=1.0,
        client_cpu_ms_per_response=0.1,
        client_cores=0.1,
        budget_exhausted=False,
        latency=summarize([0.002, 0.003, 0.004]),
        by_label={},
        by_status={},
    )


def _cell(ok_per_s: float, **extra: float) -> Cell:
    cpu = ServerCpu(
        loop_cores=0.5, threads_cores=0.1, loop_ms_per_response=0.3, threads_ms_per_response=0.0
    )
    return Cell(
        load=_load(ok_per_s),
        server_cpu=cpu,
        other_processes_cores=0.2,
        steal_cores=0.0,
        background_logins=_load(10.0) if extra.get("loaded") else None,
        p99_ratio_to_idle=2.0 if extra.get("loaded") else None,
    )


def _backend() -> BackendResult:
    ceiling = Ceiling(
        threads=2,
        verifies_per_s=10.0,
        ms_per_verify=200.0,
        cpu_ms_per_verify=170.0,
        other_processes_cores=0.1,
    )
    login = LoginCell(
        cell=_cell(9.8),
        ceiling_threads=2,
        ceiling_verifies_per_s=10.0,
        ratio_to_ceiling=0.98,
        cpu_outside_argon2_ms=3.0,
        cpu_bound_ratio=0.98,
    )
    endpoints = READ_ENDPOINTS
    return BackendResult(
        server_pid=1,
        memory_at_start={"VmRSS": 1, "VmHWM": 1},
        login=dict.fromkeys(C, login),
        argon2_ceiling=CeilingSummary.of([ceiling, ceiling]),
        idle={name: dict.fromkeys(C, _cell(3000.0)) for name in endpoints},
        loaded={name: dict.fromkeys(C, _cell(1500.0, loaded=1)) for name in endpoints},
        refresh=dict.fromkeys(C, _cell(1200.0)),
        register=dict.fromkeys(C, _cell(9.0)),
        enumeration_timing=EnumerationTiming(
            unknown_user=Latency(40, 200.0, 200.0, 210.0, 220.0, 230.0),
            wrong_password=Latency(40, 201.0, 201.0, 211.0, 221.0, 231.0),
            ratio_p50=0.995,
            ratio_mean=0.995,
        ),
        peak_rss=PeakRss(200, 1, 1, 1, True, 2, 2, 1, 1 << 20, 1 << 18, 0.0, _cell(5.0)),
        memory_by_phase_kib={},
        seconds=12.0,
        code_flow=CodeFlowCell(8, 412.0, 9.5, 10.25, server_cpu_ms_per_flow=2.5),
    )


def test_a_job_and_a_result_survive_the_json_pipe_to_the_load_worker() -> None:
    job = Job(
        port=1,
        requests=[RequestSpec("a", "GET", "/x", {"H": "v"})],
        concurrency=2,
        duration_s=0.5,
        expect=(201,),
        kind="register",
    )
    assert Job.from_json(job.to_json()) == job
    result = _load(5.0)
    assert LoadResult.from_json(result.to_json()) == result


def test_the_report_renders_every_table_from_typed_results() -> None:
    params = HashParams(memory_kib=65536, time_cost=3, parallelism=4, pool_size=2)
    plan = Plan(True, warmup_s=0.1, cell_s=0.3, login_s=1.0, ceiling_s=1.0, timing_pairs=8)
    meta = Meta("now", True, plan, params, 2, "3.11", "linux", 1, "abc", [1, 4, 16, 64], 60.0)
    results = BenchResults(meta, {"embedded": _backend(), "postgres_redis": Skipped("no PG")})
    report = render_markdown(results)
    assert "| login req/s | 9.8 | 9.8 | 9.8 | 9.8 |" in report
    assert "| GET /users/me idle req/s | 3,000 | 3,000 | 3,000 | 3,000 |" in report
    assert "Skipped: no PG" in report
    assert "c=8: **412 flows/s**; authorize mean 9.50 ms, token exchange mean 10.25 ms" in report
    assert "2.50 ms of CPU per flow (400 flows/s per fully busy worker" in report
    assert "| idle /users/me ≥ 3,000 req/s per worker (1 worker(s), best c) | 3,000 req/s ✅ |" in (
        report
    )
    assert "| idle /users/me p99 ≤ 10 ms (issue 13) (c=16) | 4.0 ms ✅ |" in report

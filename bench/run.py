"""`make bench`: start the service as deployed, load it from separate processes, report.

Runs twice, on the embedded default (SQLite + in-process store, temp data dir) and on
PostgreSQL + Redis (its own `auth_bench_<random>` database and Redis key prefix, both
removed afterwards). In the same run it measures the argon2 ceiling with the service's own
parameters and pool size, so every figure can be read as a ratio taken on one machine at one
time. Writes bench/results/latest.json and latest.md and prints the Markdown.

BENCH_QUICK=1 shrinks every cell for a short smoke run.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

from bench import code_flow
from bench.backends import BACKENDS
from bench.cells import Bench
from bench.plan import CONCURRENCY, HOST, HashParams, Plan
from bench.report import render_markdown
from bench.results import (
    BackendResult,
    BenchResults,
    CeilingSummary,
    Meta,
    Skipped,
    WorkersCells,
)
from bench.server import BenchServer, service_env

__all__ = ["main", "run_backend"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CODE_FLOW_CONCURRENCY = 8  # relying parties sharing one browser session


def bench_backend(
    server: BenchServer, plan: Plan, params: HashParams, workdir: Path
) -> BackendResult:
    """Every cell on one running server, in an order that keeps ceilings close to logins."""
    bench = Bench(server, plan, params)
    try:
        bench.setup()
        memory = {"ready": {"VmRSS": bench.ready_rss_kib}, "after_setup": server.memory_kib()}
        # Warm the server (imports, connection pools) and the client before measuring.
        bench.primary.run(bench.job([bench.users_me()], 4, warmup_s=0, duration_s=0.5))
        login, ceilings = bench.login_cells()
        memory["after_login_cells"] = server.memory_kib()
        idle = bench.idle_cells()
        memory["after_idle_reads"] = server.memory_kib()
        loaded = bench.loaded_cells(idle)
        memory["after_loaded_reads"] = server.memory_kib()
        refresh = bench.refresh_cells()
        memory["after_refresh"] = server.memory_kib()
        register = bench.register_cells()
        memory["after_register"] = server.memory_kib()
        timing = bench.enumeration_timing()
        peak_rss = bench.peak_rss()
        memory["after_peak_rss"] = server.memory_kib()
        flows = code_flow.measure(
            server, code_flow.add_client(server, workdir), plan.cell_s, CODE_FLOW_CONCURRENCY
        )
        return BackendResult(
            server_pid=server.pid,
            memory_at_start=memory["after_setup"],
            login=login,
            argon2_ceiling=CeilingSummary.of(ceilings),
            idle=idle,
            loaded=loaded,
            refresh=refresh,
            register=register,
            enumeration_timing=timing,
            peak_rss=peak_rss,
            memory_by_phase_kib=memory,
            code_flow=flows,
        )
    finally:
        bench.close()


def compare_two_workers(
    one: BenchServer, plan: Plan, params: HashParams, workdir: Path
) -> dict[str, WorkersCells]:
    """GET /users/me on this 1-worker server and on a 2-worker one over the same database
    and Redis, back to back: latency at c=1 (a Nagle stall would add ~40 ms per response
    there), and what both serve at c=16, idle and while 16 clients log in."""
    two = BenchServer("two_workers", {**one.env, "AUTH_WORKERS": "2"}, workdir)
    two.start(client=one.introspection_client)  # same database: the client exists
    print(f"bench: postgres_redis: 2 workers on {HOST}:{two.port} (pid {two.pid})")
    out: dict[str, WorkersCells] = {}
    try:
        for workers, server in ((1, one), (2, two)):
            bench = Bench(server, plan, replace(params, workers=workers))
            try:
                bench.access = bench.log_in().access_token
                users_me = bench.users_me()
                out[str(workers)] = WorkersCells(
                    c1=bench.measure(bench.job([users_me], 1)),
                    c16=bench.measure(bench.job([users_me], 16)),
                    c16_loaded=bench.measure_beside_logins(bench.job([users_me], 16)),
                )
            finally:
                bench.close()
    finally:
        two.stop()
    return out


def run_backend(name: str, plan: Plan, params: HashParams) -> BackendResult:
    """Set up the backend, serve, bench, and tear everything down."""
    workdir = Path(tempfile.mkdtemp(prefix=f"auth_bench_{name}_"))
    started = time.monotonic()
    try:
        with BACKENDS[name](workdir) as overrides:
            server = BenchServer(name, service_env(overrides), workdir)
            try:
                server.start()
                print(f"bench: {name}: serving on {HOST}:{server.port} (pid {server.pid})")
                result = bench_backend(server, plan, params, workdir)
                if name == "postgres_redis" and params.workers == 1:
                    two = compare_two_workers(server, plan, params, workdir)
                    result = replace(result, two_workers=two)
            finally:
                server.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return replace(result, seconds=time.monotonic() - started)


def git_state() -> str:
    """The commit benchmarked, and whether auth_service/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "auth_service"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head}{' + uncommitted changes in auth_service/' if dirty else ''}"


def main() -> int:
    """Run the plan on both backends, write the results, print the table."""
    plan = Plan.from_env()
    params = HashParams.from_settings()
    started = time.monotonic()
    meta = Meta(
        date=time.strftime("%Y-%m-%d %H:%M:%S %z"),
        quick=plan.quick,
        plan=plan,
        hash=params,
        cpus=os.cpu_count(),
        python=platform.python_version(),
        platform=platform.platform(),
        workers=params.workers,
        git=git_state(),
        concurrency=list(CONCURRENCY),
    )
    results = BenchResults(meta)
    for name in BACKENDS:
        try:
            results.backends[name] = run_backend(name, plan, params)
        except Exception as exc:  # a missing PostgreSQL or Redis skips that backend
            if name == "embedded" or os.environ.get("CI") == "true":
                raise
            print(f"bench: {name} skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
            results.backends[name] = Skipped(f"{type(exc).__name__}: {exc}")
    results.meta = replace(meta, seconds=time.monotonic() - started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(asdict(results), indent=2) + "\n")
    markdown = render_markdown(results)
    (RESULTS / "latest.md").write_text(markdown)
    print(markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

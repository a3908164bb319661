"""`make scale-test`: build the hosts, run the load, inject the faults, judge, clean up.

    python -m tests.scale.run [--out DIR]

Needs root (network namespaces) and the Debian tools of scripts/ensure-scale-tools.
Prints a per-fault table and writes it, with every failed check, to DIR/scale-report.json.
Exits 1 when any guarantee failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.scale.cluster import REPLICAS, Cluster, postgres_bin
from tests.scale.faults import FAULTS
from tests.scale.verdict import Verdict, Window, judge

WARMUP_SECONDS = 6.0
SETTLE_SECONDS = 4.0
LOAD_MAX_SECONDS = 1200.0  # a safety stop only: the runner ends the load after the faults
CLIENT_EXIT_TIMEOUT_SECONDS = 240.0
THROUGHPUT_SECONDS = 20.0
THROUGHPUT_CPU = "0"
IDLE_SECONDS = 5.0
STATS_FLUSH_SECONDS = 2.5  # a backend flushes its statistics within ~1 s of idling
REPO = Path(__file__).resolve().parents[2]


def start_client(cluster: Cluster, out: Path, **overrides: Any) -> subprocess.Popen[bytes]:
    config = {
        "lb_url": cluster.lb_url,
        "replica_urls": [cluster.replica_url(h) for h in REPLICAS],
        "stop_file": str(out / "stop"),
        "out_dir": str(out),
        "max_seconds": LOAD_MAX_SECONDS,
        "users": 6,
        "think_seconds": 0.05,
        "seed": int(time.time()),
        **overrides,
    }
    (out / "client.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    env["PYTHONPATH"] = str(REPO)
    with (out / "client.log").open("wb") as log:
        return subprocess.Popen(
            [
                *cluster.network.exec_prefix("cl"),
                sys.executable,
                "-m",
                "tests.scale.load",
                str(out / "client.json"),
            ],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def run_faults(cluster: Cluster, names: list[str]) -> list[Window]:
    windows = []
    time.sleep(WARMUP_SECONDS)
    for fault in FAULTS:
        if names and fault.name not in names:
            continue
        start = time.time()
        print(f"scale-test: fault {fault.name} ...", flush=True)
        fault.inject(cluster)
        windows.append(
            Window(
                fault.name,
                start,
                time.time(),
                fault.zero_failures,
                fault.lossy,
                fault.revocations_lost,
            )
        )
        print(f"scale-test: fault {fault.name} over after {time.time() - start:.1f} s", flush=True)
        time.sleep(SETTLE_SECONDS)
    return windows


def print_table(verdict: Verdict) -> None:
    columns = [
        "fault",
        "requests",
        "failed",
        "503",
        "other_failures",
        "lost_in_flight",
        "revoked_accepted",
        "fault_seconds",
        "seconds_to_recover",
    ]
    widths = {c: max(len(c), *(len(str(row[c])) for row in verdict.table)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for row in verdict.table:
        print("  ".join(str(row[c]).ljust(widths[c]) for c in columns))
    print("totals:", json.dumps(verdict.totals))


def report(verdict: Verdict, out: Path) -> dict[str, Any]:
    checks = {
        name: {"count": len(examples), "examples": examples[:5]}
        for name, examples in verdict.failures.items()
    }
    body = {"faults": verdict.table, "totals": verdict.totals, "failed_checks": checks}
    (out / "scale-report.json").write_text(json.dumps(body, indent=2))
    return body


def pin_replicas(cluster: Cluster, cpu: str) -> None:
    """Every process of every replica on the same CPU(s): one fixed budget for them all."""
    for host in REPLICAS:
        process = cluster.replica(host).process
        assert process is not None
        pids = subprocess.run(
            ["pgrep", "-g", str(process.pid)],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.split()
        for pid in pids:
            subprocess.run(
                ["taskset", "-a", "-cp", cpu, pid], capture_output=True, timeout=10, check=False
            )


# Redis commands only clients send (our scripts call GET, SET, PTTL, EXISTS, DEL, INCR):
# each one round trip, EVALSHA running a whole script.
ROUND_TRIP_COMMANDS = ("evalsha", "eval", "mget", "wait", "info", "ping")


def coordination_counts(cluster: Cluster) -> tuple[int, int]:
    """(PostgreSQL transactions of the service's database, Redis calls) so far. Each
    autocommitted statement is one transaction; BEGIN ... COMMIT is one for its three.
    The Redis calls are those of ROUND_TRIP_COMMANDS: Redis counts the commands a script
    runs as well, so its total is not round trips (the generation check's GET, every 2 s
    per worker, is left out)."""
    with cluster.redis_client(cluster.redis_primary_host()) as client:
        stats = client.info("commandstats")
        commands = sum(
            int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ROUND_TRIP_COMMANDS
        )
    done = subprocess.run(
        [
            str(postgres_bin() / "psql"),
            "-h",
            str(cluster.pg_dir),
            "-U",
            "postgres",
            "-At",
            "-c",
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = 'auth'",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return int(done.stdout.split()[-1]), commands


def background_rates(cluster: Cluster, seconds: float) -> tuple[float, float]:
    """PostgreSQL transactions and Redis commands per second with no load: health checks,
    generation checks, Sentinel and replication."""
    time.sleep(STATS_FLUSH_SECONDS)
    pg0, redis0 = coordination_counts(cluster)
    time.sleep(seconds)
    pg1, redis1 = coordination_counts(cluster)
    return (pg1 - pg0) / seconds, (redis1 - redis0) / seconds


def measure_throughput(cluster: Cluster, out: Path) -> list[dict[str, Any]]:
    """Requests/s through HAProxy with 1 and then 3 replicas, all pinned to one CPU, and
    the PostgreSQL transactions and Redis commands each request cost (idle rate removed)."""
    pin_replicas(cluster, THROUGHPUT_CPU)
    rows = []
    for enabled in (1, 3):
        for index, host in enumerate(REPLICAS):
            verb = "enable" if index < enabled else "disable"
            cluster.haproxy_command(f"{verb} server replicas/{host}")
        time.sleep(2.0)
        pg_idle, redis_idle = background_rates(cluster, IDLE_SECONDS)
        phase = out / f"throughput-{enabled}"
        phase.mkdir()
        pg0, redis0 = coordination_counts(cluster)
        started = time.time()
        client = start_client(
            cluster,
            phase,
            max_seconds=THROUGHPUT_SECONDS,
            users=8,
            think_seconds=0.0,
            skip_final_checks=True,
        )
        client.wait(timeout=THROUGHPUT_SECONDS + 120)
        time.sleep(STATS_FLUSH_SECONDS)
        pg1, redis1 = coordination_counts(cluster)
        elapsed = time.time() - started
        records = [json.loads(line) for line in (phase / "records.jsonl").open()]
        ok = [r for r in records if r["status"] is not None and r["status"] < 500]
        span = max(r["t1"] for r in records) - min(r["t0"] for r in records)
        pg_load = pg1 - pg0 - pg_idle * elapsed
        redis_load = redis1 - redis0 - redis_idle * elapsed
        rows.append(
            {
                "replicas": enabled,
                "cpu_budget": f"CPU {THROUGHPUT_CPU} shared by all replicas",
                "requests": len(records),
                "requests_per_second": round(len(ok) / span, 1),
                "per_replica": round(len(ok) / span / enabled, 1),
                "failed": len(records) - len(ok),
                "postgres_transactions_per_request": round(pg_load / len(records), 2),
                "redis_round_trips_per_request": round(redis_load / len(records), 2),
                "idle_postgres_transactions_per_second": round(pg_idle, 1),
                "idle_redis_round_trips_per_second": round(redis_idle, 1),
                "by_op": {
                    op: sum(1 for r in records if r["op"] == op)
                    for op in sorted({r["op"] for r in records})
                },
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO / "scale-report",
        help="where the records and scale-report.json go",
    )
    parser.add_argument(
        "--faults",
        nargs="*",
        default=[],
        choices=[f.name for f in FAULTS],
        help="only these faults (default: all, in order)",
    )
    parser.add_argument(
        "--throughput",
        action="store_true",
        help="instead of faults: requests/s with 1 and 3 replicas on one CPU",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("scale-test: needs root for network namespaces", file=sys.stderr)
        return 0 if os.environ.get("CI") != "true" else 1
    out: Path = args.out
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    directory = Path(tempfile.mkdtemp(prefix="auth-scale-"))
    cluster = Cluster(directory)
    client: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    try:
        print(f"scale-test: building hosts {cluster.network.suffix}-* in {directory}", flush=True)
        cluster.build()
        print(f"scale-test: up after {time.monotonic() - started:.1f} s; load starts", flush=True)
        if args.throughput:
            rows = measure_throughput(cluster, out)
            (out / "throughput.json").write_text(json.dumps(rows, indent=2))
            for row in rows:
                print(json.dumps(row))
            return 0
        client = start_client(cluster, out)
        windows = run_faults(cluster, args.faults)
        (out / "stop").touch()
        client.wait(timeout=CLIENT_EXIT_TIMEOUT_SECONDS)
        if client.returncode != 0:
            print((out / "client.log").read_text(errors="replace")[-4000:])
            raise RuntimeError(f"the load client exited with {client.returncode}")
        records = [json.loads(line) for line in (out / "records.jsonl").open()]
        final = json.loads((out / "final.json").read_text())
        (out / "windows.json").write_text(json.dumps([vars(w) for w in windows]))
    finally:
        if client is not None and client.poll() is None:
            os.killpg(client.pid, 9)
            client.wait(timeout=10)
        cluster.destroy()
        for proc in cluster.processes.procs.values():
            if proc.log_path.exists():
                shutil.copy(proc.log_path, out / proc.log_path.name)
        shutil.rmtree(directory, ignore_errors=True)
    verdict = judge(records, final, windows)
    body = report(verdict, out)
    print_table(verdict)
    print(
        f"scale-test: {time.monotonic() - started:.0f} s in all; report in "
        f"{out / 'scale-report.json'}"
    )
    for name, check in body["failed_checks"].items():
        print(f"FAILED CHECK: {name}: {check['count']} x, e.g. {check['examples'][0]}")
    return 1 if verdict.failures else 0


if __name__ == "__main__":
    sys.exit(main())

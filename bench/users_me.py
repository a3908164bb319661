"""`python -m bench.users_me`: only the idle GET /users/me cell at c=16 (or another read
cell: `--endpoint client_credentials`), repeated, per backend.

A quick check of the read path's tail latency (issue 13: the p99 of this cell) without the
whole `make bench`: the same server, load worker and CPU accounting, a longer cell.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench.backends import BACKENDS
from bench.cells import Bench
from bench.plan import READ_ENDPOINTS, HashParams, Plan
from bench.server import BenchServer, service_env

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Print one line per run: req/s, mean, p50, p99, max and the machine's other load."""
    parser = argparse.ArgumentParser(prog="python -m bench.users_me", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="measured time per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--backend", choices=sorted(BACKENDS), action="append")
    parser.add_argument("--endpoint", choices=READ_ENDPOINTS, default="users_me")
    args = parser.parse_args(argv)
    plan = Plan(False, warmup_s=0.5, cell_s=args.seconds, login_s=1, ceiling_s=1, timing_pairs=1)
    params = HashParams.from_settings()
    for name in args.backend or list(BACKENDS):
        workdir = Path(tempfile.mkdtemp(prefix=f"auth_bench_{name}_"))
        try:
            with BACKENDS[name](workdir) as overrides:
                server = BenchServer(name, service_env(overrides), workdir)
                server.start()
                bench = Bench(server, plan, params)
                try:
                    bench.register("bench_user")
                    bench.access = bench.log_in().access_token
                    request = bench.reads()[args.endpoint]
                    bench.primary.run(bench.job([request], 4, warmup_s=0, duration_s=0.5))
                    for run in range(args.runs):
                        cell = bench.measure(bench.job([request], args.concurrency))
                        lat = cell.latency
                        print(
                            f"{name} {args.endpoint} c={args.concurrency} run {run + 1}: "
                            f"{cell.load.ok_per_s:,.0f} req/s, mean {lat.mean_ms:.2f}, "
                            f"p50 {lat.p50_ms:.2f}, p99 {lat.p99_ms:.2f}, max {lat.max_ms:.1f} ms; "
                            f"statuses {cell.load.statuses}; server loop "
                            f"{cell.server_cpu.loop_cores:.2f} cores, "
                            f"{cell.server_cpu.loop_ms_per_response:.3f} ms CPU/response; "
                            f"other processes {cell.other_processes_cores:.2f} cores",
                            flush=True,
                        )
                finally:
                    bench.close()
                    server.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

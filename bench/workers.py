"""Load-generator processes (`python -m bench.load`) and the CPU accounting around a job."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.load import Job, LoadResult
from bench.machine import machine_cpu, process_cpu
from bench.results import Cell, ServerCpu
from bench.server import BenchServer

__all__ = ["LoadWorker", "measured"]

ROOT = Path(__file__).resolve().parent.parent


class LoadWorker:
    """A `python -m bench.load` child: JSON jobs in, JSON results out, one per line."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.load"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self.process.pid

    def submit(self, job: Job) -> None:
        """Hand a job over; the worker starts it at once."""
        assert self.process.stdin is not None
        self.process.stdin.write(job.to_json() + "\n")
        self.process.stdin.flush()

    def result(self) -> LoadResult:
        """The result of the job submitted last (every job is bounded in time)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the load worker exited")
        failure = json.loads(line).get("error")
        if failure is not None:
            raise RuntimeError(f"load job failed: {failure}")
        return LoadResult.from_json(line)

    def run(self, job: Job) -> LoadResult:
        """Submit and wait."""
        self.submit(job)
        return self.result()

    def stop(self) -> None:
        """Close its stdin (it exits), then make sure by PID."""
        if self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


def measured(
    server: BenchServer, worker: LoadWorker, job: Job, helpers: tuple[int, ...] = ()
) -> Cell:
    """Run `job` on `worker`; add the server's CPU use over it (loop vs other threads) and
    the CPU that processes other than the bench's used meanwhile (a shared machine).

    Per-response figures divide by every response of the job (this worker's only, so in
    loaded cells they include the background logins' cost). `helpers` are the PIDs of the
    load workers.
    """
    busy_before, steal_before = machine_cpu()
    ours_before = sum(map(process_cpu, helpers)) + time.process_time()
    loop_before, threads_before = server.cpu_seconds()
    started = time.perf_counter()
    result = worker.run(job)
    elapsed = time.perf_counter() - started
    loop_after, threads_after = server.cpu_seconds()
    ours_after = sum(map(process_cpu, helpers)) + time.process_time()
    busy_after, steal_after = machine_cpu()
    responses = max(1, result.responses_total)
    loop, threads = loop_after - loop_before, threads_after - threads_before
    foreign = busy_after - busy_before - loop - threads - (ours_after - ours_before)
    return Cell(
        load=result,
        server_cpu=ServerCpu(
            loop_cores=loop / result.wall_s,
            threads_cores=threads / result.wall_s,
            loop_ms_per_response=loop * 1000 / responses,
            threads_ms_per_response=threads * 1000 / responses,
        ),
        other_processes_cores=max(0.0, foreign) / elapsed,
        steal_cores=(steal_after - steal_before) / elapsed,
    )

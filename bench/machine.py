"""CPU accounting from /proc and the argon2 ceiling measured in the bench process itself."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from passlib.context import CryptContext

from bench.plan import PASSWORD, HashParams
from bench.results import Ceiling

__all__ = ["argon2_ceiling", "machine_cpu", "process_cpu"]


def machine_cpu() -> tuple[float, float]:
    """Busy and steal CPU seconds of the whole machine so far (first line of /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    tick = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / tick, steal / tick


def thread_cpu(stat: Path) -> float:
    """utime + stime in seconds from a /proc/<pid>[/task/<tid>]/stat file; 0 once gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds used so far by one process (all its threads, exited ones included)."""
    return thread_cpu(Path(f"/proc/{pid}/stat"))


def argon2_ceiling(params: HashParams, duration_s: float, threads: int) -> Ceiling:
    """Verifies/s on `threads` threads with the service's argon2 parameters, via passlib."""
    context = CryptContext(
        schemes=["argon2"],
        argon2__type="ID",
        argon2__memory_cost=params.memory_kib,
        argon2__rounds=params.time_cost,
        argon2__parallelism=params.parallelism,
    )
    stored = context.hash(PASSWORD)
    counts = [0] * threads
    begin = threading.Barrier(threads + 1)
    max_per_thread = int(duration_s * 1000) + 10  # far above what one thread can reach

    def work(index: int) -> None:
        begin.wait()
        deadline = time.perf_counter() + duration_s
        for _ in range(max_per_thread):
            if time.perf_counter() >= deadline:
                break
            context.verify(PASSWORD, stored)
            counts[index] += 1

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    busy_before = machine_cpu()[0]
    own_before = time.process_time()
    begin.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    own = time.process_time() - own_before
    foreign = machine_cpu()[0] - busy_before - own
    rate = sum(counts) / elapsed
    return Ceiling(
        threads=threads,
        verifies_per_s=rate,
        ms_per_verify=threads / rate * 1000,
        cpu_ms_per_verify=own * 1000 / max(1, sum(counts)),
        other_processes_cores=max(0.0, foreign) / elapsed,
    )

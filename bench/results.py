"""Typed results of a bench run; `latest.json` is `dataclasses.asdict` of `BenchResults`."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.load import Latency, LoadResult
from bench.plan import HashParams, Plan

__all__ = [
    "BackendResult",
    "BenchResults",
    "Ceiling",
    "CeilingSummary",
    "Cell",
    "EnumerationTiming",
    "LoginCell",
    "Meta",
    "PeakRss",
    "ServerCpu",
    "Skipped",
    "ThreadsCeiling",
    "WorkersCells",
]


@dataclass(frozen=True)
class Ceiling:
    """One argon2 ceiling measurement in the bench process."""

    threads: int
    verifies_per_s: float
    ms_per_verify: float
    cpu_ms_per_verify: float
    other_processes_cores: float


@dataclass(frozen=True)
class ThreadsCeiling:
    """The ceilings measured on one thread count: mean, range and how many."""

    verifies_per_s: float
    min: float
    max: float
    measurements: int


@dataclass(frozen=True)
class CeilingSummary:
    """Every ceiling of a backend, grouped by thread count."""

    by_threads: dict[str, ThreadsCeiling]
    cpu_ms_per_verify: float
    measurements: list[Ceiling]

    @classmethod
    def of(cls, ceilings: list[Ceiling]) -> CeilingSummary:
        """Group `ceilings` by their thread count."""
        by_threads: dict[str, ThreadsCeiling] = {}
        for threads in sorted({ceiling.threads for ceiling in ceilings}):
            rates = [c.verifies_per_s for c in ceilings if c.threads == threads]
            by_threads[str(threads)] = ThreadsCeiling(
                verifies_per_s=sum(rates) / len(rates),
                min=min(rates),
                max=max(rates),
                measurements=len(rates),
            )
        cpu = sum(c.cpu_ms_per_verify for c in ceilings) / len(ceilings)
        return cls(by_threads=by_threads, cpu_ms_per_verify=cpu, measurements=ceilings)


@dataclass(frozen=True)
class ServerCpu:
    """The server's CPU over one job: event-loop (main) threads against all other threads."""

    loop_cores: float
    threads_cores: float
    loop_ms_per_response: float
    threads_ms_per_response: float


@dataclass(frozen=True)
class Cell:
    """One measured load job: the clients' view, the server's CPU and the machine's noise."""

    load: LoadResult
    server_cpu: ServerCpu
    other_processes_cores: float
    steal_cores: float
    drained_after_s: float | None = None  # argon2 backlog waited out after the cell
    background_logins: LoadResult | None = None  # loaded cells: the login load beside it
    p99_ratio_to_idle: float | None = None  # loaded cells: p99 over the idle cell's p99

    @property
    def latency(self) -> Latency:
        """The latency of every expected answer."""
        return self.load.latency


@dataclass(frozen=True)
class LoginCell:
    """A password-grant cell beside the argon2 ceilings measured just before and after it."""

    cell: Cell
    ceiling_threads: int
    ceiling_verifies_per_s: float
    ratio_to_ceiling: float
    cpu_outside_argon2_ms: float  # server loop + client CPU per login
    cpu_bound_ratio: float | None  # argon2's share of a login's CPU; None without hashing


@dataclass(frozen=True)
class EnumerationTiming:
    """Unknown-user against wrong-password login latency on one connection."""

    unknown_user: Latency
    wrong_password: Latency
    ratio_p50: float
    ratio_mean: float


@dataclass(frozen=True)
class PeakRss:
    """Peak RSS of the server while many clients log in at once (KiB)."""

    concurrency: int
    rss_ready_kib: int
    rss_before_kib: int
    peak_before_kib: int
    peak_reset: bool
    peak_kib: int
    whole_run_peak_kib: int
    rss_after_kib: int
    growth_kib: int
    hash_pool_memory_kib: int
    drained_after_s: float
    logins: Cell


@dataclass(frozen=True)
class WorkersCells:
    """GET /users/me on one server of the 1-vs-2-workers comparison."""

    c1: Cell
    c16: Cell
    c16_loaded: Cell


@dataclass(frozen=True)
class BackendResult:
    """Every cell of one backend; cell maps are keyed by concurrency as a string."""

    server_pid: int
    memory_at_start: dict[str, int]
    login: dict[str, LoginCell]
    argon2_ceiling: CeilingSummary
    idle: dict[str, dict[str, Cell]]  # endpoint -> concurrency -> cell
    loaded: dict[str, dict[str, Cell]]
    refresh: dict[str, Cell]
    register: dict[str, Cell]
    enumeration_timing: EnumerationTiming
    peak_rss: PeakRss
    memory_by_phase_kib: dict[str, dict[str, int]]
    seconds: float = 0.0
    two_workers: dict[str, WorkersCells] | None = None  # PostgreSQL + Redis, 1 worker runs
    code_flow: CodeFlowCell | None = None


@dataclass(frozen=True)
class CodeFlowCell:
    """The browser-less code flow (authorize with the SSO cookie -> code -> token)."""

    concurrency: int
    flows_per_s: float
    authorize_mean_ms: float
    token_mean_ms: float
    # The server's CPU (every thread) per flow: its capacity per core, whatever the
    # Python load client (httpx, in this process) could drive on the shared cores.
    server_cpu_ms_per_flow: float

    @property
    def flows_per_server_core(self) -> float:
        """Flows per second one fully busy worker would complete."""
        return 1000.0 / self.server_cpu_ms_per_flow if self.server_cpu_ms_per_flow else 0.0


@dataclass(frozen=True)
class Skipped:
    """A backend that could not run (PostgreSQL or Redis unreachable)."""

    skipped: str


@dataclass(frozen=True)
class Meta:
    """When, where and how the bench ran."""

    date: str
    quick: bool
    plan: Plan
    hash: HashParams
    cpus: int | None
    python: str
    platform: str
    workers: int
    git: str
    concurrency: list[int]
    seconds: float = 0.0


@dataclass
class BenchResults:
    """A whole run: its metadata and one result per backend."""

    meta: Meta
    backends: dict[str, BackendResult | Skipped] = field(default_factory=dict)

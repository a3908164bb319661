"""Turn the typed results of a run (bench/results.py) into the Markdown report."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from bench.load import LoadResult
from bench.results import BackendResult, BenchResults, Cell, LoginCell, Meta, Skipped, WorkersCells
from bench.targets import check_targets

__all__ = ["check_targets", "render_markdown"]

CONCURRENCY = ("1", "4", "16", "64")
TITLES = {
    "embedded": "embedded default: SQLite + in-process store",
    "postgres_redis": "PostgreSQL + Redis",
}
ENDPOINTS = {
    "users_me": "GET /users/me",
    "introspect": "POST /introspect",
    "jwks": "GET /.well-known/jwks.json",
    "client_credentials": "POST /token (client_credentials)",
}
AnyCell = TypeVar("AnyCell", Cell, LoginCell)


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _lat(cell: Cell) -> str:
    latency = cell.latency
    if not latency.count:
        return "-"
    return f"{latency.p50_ms:.1f} / {latency.p99_ms:.1f}"


def _refused(result: LoadResult) -> str:
    busy = result.by_status.get("503")
    if not busy or not busy.count:
        return ""
    return f" (503 answered in p50 {busy.p50_ms:.1f} / p99 {busy.p99_ms:.1f} ms)"


def _row(name: str, cells: Mapping[str, AnyCell], render: Callable[[AnyCell], str]) -> str:
    return "| " + name + " | " + " | ".join(render(cells[c]) for c in CONCURRENCY) + " |"


def _anomalies(backend: BackendResult) -> list[str]:
    """Cells that saw statuses other than the expected ones, or transport errors."""
    notes: list[str] = []

    def visit(where: str, result: LoadResult) -> None:
        expected = {"200", "201", "400"}
        odd = {code: n for code, n in result.statuses.items() if code not in expected}
        if odd or result.errors:
            notes.append(f"{where}: statuses {result.statuses}, errors {result.errors}")

    def visit_cell(where: str, cell: Cell) -> None:
        visit(where, cell.load)
        if cell.background_logins is not None:
            visit(where + " (background logins)", cell.background_logins)

    for c, login in backend.login.items():
        visit_cell(f"login c={c}", login.cell)
    for group, cells in (("refresh", backend.refresh), ("register", backend.register)):
        for c, cell in cells.items():
            visit_cell(f"{group} c={c}", cell)
    for mode, by_name in (("idle", backend.idle), ("loaded", backend.loaded)):
        for name, per_c in by_name.items():
            for c, cell in per_c.items():
                visit_cell(f"{mode} {name} c={c}", cell)
    return notes


def _cells(backend: BackendResult) -> list[Cell]:
    cells = [login.cell for login in backend.login.values()]
    cells += [*backend.refresh.values(), *backend.register.values()]
    for by_name in (backend.idle, backend.loaded):
        for per_c in by_name.values():
            cells += per_c.values()
    return cells


def _noise(backend: BackendResult) -> list[str]:
    """How busy the rest of the machine was: figures taken beside a busy neighbour drift."""
    cells = [cell.other_processes_cores for cell in _cells(backend)]
    ceilings = [m.other_processes_cores for m in backend.argon2_ceiling.measurements]
    steal = max(cell.steal_cores for cell in _cells(backend))
    return [
        f"- Other processes on the machine used {sum(cells) / len(cells):.2f} cores on average "
        f"during the cells (max {max(cells):.2f}), {sum(ceilings) / len(ceilings):.2f} during "
        f"the argon2 ceilings (max {max(ceilings):.2f}); hypervisor steal up to {steal:.2f}. "
        "Ratios taken beside a busy neighbour are noisy; the CPU-per-response figures are not.",
    ]


def _cpu_table(backend: BackendResult) -> list[str]:
    """Where the CPU goes per response, c=16 idle cells: server loop, other threads, client."""
    c = "16"
    rows = [("login (password grant)", backend.login[c].cell)]
    rows += [(title, backend.idle[key][c]) for key, title in ENDPOINTS.items()]
    rows += [("refresh grant", backend.refresh[c]), ("register", backend.register[c])]
    lines = [
        "",
        f"CPU per response at c={c} (idle cells), ms; 'cores' = share of one core used:",
        "",
        "| request | req/s | server event loop | server other threads "
        "| loop cores | client (load generator) |",
        "|---|---|---|---|---|---|",
    ]
    for title, cell in rows:
        cpu = cell.server_cpu
        lines.append(
            f"| {title} | {_num(cell.load.ok_per_s)} | {cpu.loop_ms_per_response:.2f} "
            f"| {cpu.threads_ms_per_response:.2f} | {cpu.loop_cores:.2f} "
            f"| {cell.load.client_cpu_ms_per_response:.2f} |"
        )
    return [*lines, ""]


def _background_rate(cell: Cell) -> str:
    logins = cell.background_logins
    return _num(logins.ok_per_s if logins is not None else None, 1)


def _two_workers(two: dict[str, WorkersCells] | None) -> list[str]:
    """One worker against two over the same data, GET /users/me, measured back to back."""
    if not two:
        return []
    lines = [
        "GET /users/me on 1 and on 2 uvicorn workers (same PostgreSQL and Redis, back to "
        "back; `AUTH_WORKERS=2`):",
        "",
        "| workers | c=1 p50 / p99 | c=16 req/s | c=16 p50 / p99 | c=16 under logins req/s "
        "| under logins p50 / p99 | background logins/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for workers, cells in two.items():
        loaded = cells.c16_loaded
        lines.append(
            f"| {workers} | {_lat(cells.c1)} | {_num(cells.c16.load.ok_per_s)} "
            f"| {_lat(cells.c16)} | {_num(loaded.load.ok_per_s)} | {_lat(loaded)} "
            f"| {_background_rate(loaded)} |"
        )
    return [*lines, ""]


def _login_rows(login: dict[str, LoginCell]) -> list[str]:
    return [
        _row("login req/s", login, lambda cell: _num(cell.cell.load.ok_per_s, 1)),
        _row("login p50 / p99", login, lambda cell: _lat(cell.cell)),
        _row(
            "argon2 ceiling around the cell (verifies/s)",
            login,
            lambda cell: f"{cell.ceiling_verifies_per_s:.1f} ({cell.ceiling_threads} thr)",
        ),
        _row(
            "CPU per login outside argon2: server loop + client (ms)",
            login,
            lambda cell: _num(cell.cpu_outside_argon2_ms, 2),
        ),
        _row(
            "queued logins still hashing after the cell ended (s, waited out)",
            login,
            lambda cell: _num(cell.cell.drained_after_s, 1),
        ),
        _row(
            "other processes' CPU during the cell (cores)",
            login,
            lambda cell: _num(cell.cell.other_processes_cores, 2),
        ),
        _row(
            "argon2 share of the CPU a login costs (bound on the ratio)",
            login,
            lambda cell: _num(cell.cpu_bound_ratio, 2),
        ),
        _row("**login ÷ argon2 ceiling**", login, lambda cell: _num(cell.ratio_to_ceiling, 2)),
    ]


def _read_rows(backend: BackendResult) -> list[str]:
    lines: list[str] = []
    for key, title in ENDPOINTS.items():
        idle, loaded = backend.idle[key], backend.loaded[key]
        lines += [
            _row(f"{title} idle req/s", idle, lambda cell: _num(cell.load.ok_per_s)),
            _row(f"{title} idle p50 / p99", idle, _lat),
            _row(f"{title} under logins req/s", loaded, lambda cell: _num(cell.load.ok_per_s)),
            _row(f"{title} under logins p50 / p99", loaded, _lat),
            _row(
                f"**{title} loaded ÷ idle p99**",
                loaded,
                lambda cell: _num(cell.p99_ratio_to_idle, 1),
            ),
            _row("  background logins/s meanwhile", loaded, _background_rate),
        ]
    return lines


def _footnotes(backend: BackendResult) -> list[str]:
    timing = backend.enumeration_timing
    rss = backend.peak_rss
    logins = rss.logins.load
    return [
        f"- Unknown-user ÷ wrong-password login time: **{timing.ratio_p50:.3f}** (p50 "
        f"{timing.unknown_user.p50_ms:.2f} vs {timing.wrong_password.p50_ms:.2f} ms; "
        f"means ratio {timing.ratio_mean:.3f}; "
        f"{timing.unknown_user.count} + {timing.wrong_password.count} logins, c=1).",
        f"- Peak RSS under {rss.concurrency} concurrent logins: **{rss.peak_kib / 1024:.0f} "
        f"MiB** (VmHWM{', reset before this load' if rss.peak_reset else ''}); "
        f"{rss.rss_ready_kib / 1024:.0f} MiB when ready, whole-run peak "
        f"{rss.whole_run_peak_kib / 1024:.0f} MiB, i.e. growth "
        f"{rss.growth_kib / 1024:.0f} MiB; the hash pool holds "
        f"{rss.hash_pool_memory_kib / 1024:.0f} MiB. Meanwhile "
        f"{logins.ok_per_s:.1f} logins/s succeeded; statuses {logins.statuses}"
        f"{_refused(logins)}.",
        f"- Backend total: {backend.seconds:.0f} s.",
        "",
    ]


def _backend_section(name: str, backend: BackendResult | Skipped, meta: Meta) -> list[str]:
    if isinstance(backend, Skipped):
        return [f"## {TITLES.get(name, name)}", "", f"Skipped: {backend.skipped}", ""]
    hashing = meta.hash
    ceiling = backend.argon2_ceiling
    rates = "; ".join(
        f"{threads} thread{'s' if threads != '1' else ''}: **{r.verifies_per_s:.1f}/s** "
        f"({r.measurements} measurements, {r.min:.1f}-{r.max:.1f})"
        for threads, r in ceiling.by_threads.items()
    )
    lines = [
        f"## {TITLES.get(name, name)}",
        "",
        f"argon2 ceiling (argon2id m={hashing.memory_kib} t={hashing.time_cost} "
        f"p={hashing.parallelism}, passlib, {ceiling.cpu_ms_per_verify:.1f} ms of CPU per "
        f"verify): {rates}. A login cell's ceiling runs min(c, "
        f"{hashing.threads} hashing threads) verifies at once, "
        "as many as the cell can have in flight, measured just before and just after the cell "
        "(their mean divides it). Latencies are p50 / p99 in ms; c = client connections.",
        "",
        "| figure | c=1 | c=4 | c=16 | c=64 |",
        "|---|---|---|---|---|",
        *_login_rows(backend.login),
        *_read_rows(backend),
        _row("refresh grant req/s", backend.refresh, lambda cell: _num(cell.load.ok_per_s)),
        _row("refresh grant p50 / p99", backend.refresh, _lat),
        _row("register req/s", backend.register, lambda cell: _num(cell.load.ok_per_s, 1)),
        _row("register p50 / p99", backend.register, _lat),
        "",
    ]
    if backend.code_flow is not None:
        flows = backend.code_flow
        lines += [
            f"Code flow (authorize with the SSO cookie -> code -> token, `bench/code_flow.py`), "
            f"c={flows.concurrency}: **{flows.flows_per_s:,.0f} flows/s**; authorize mean "
            f"{flows.authorize_mean_ms:.2f} ms, token exchange mean {flows.token_mean_ms:.2f} ms; "
            f"the server spent {flows.server_cpu_ms_per_flow:.2f} ms of CPU per flow "
            f"({flows.flows_per_server_core:,.0f} flows/s per fully busy worker; the Python "
            "load client shares the cores).",
            "",
        ]
    lines += _cpu_table(backend)
    lines += _two_workers(backend.two_workers)
    lines += _noise(backend)
    lines += _footnotes(backend)
    notes = _anomalies(backend)
    if notes:
        lines += ["Unexpected statuses or errors:", ""] + [f"- {note}" for note in notes] + [""]
    return lines


def _targets_table(results: BenchResults) -> list[str]:
    measured = {
        name: backend
        for name, backend in results.backends.items()
        if isinstance(backend, BackendResult)
    }
    if not measured:
        return []
    lines = [
        "## Targets (issues 7, 13, 15)",
        "",
        "| target | " + " | ".join(TITLES.get(n, n) for n in measured) + " |",
        "|---|" + "---|" * len(measured),
    ]
    table = {
        n: {target: (value, met) for target, value, met in check_targets(b, results.meta.hash)}
        for n, b in measured.items()
    }
    targets = list(dict.fromkeys(target for n in measured for target in table[n]))
    for target in targets:
        cells = []
        for n in measured:
            found = table[n].get(target)
            cells.append("n/a" if found is None else f"{found[0]} {'✅' if found[1] else '❌'}")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def render_markdown(results: BenchResults) -> str:
    """The whole report: one table per backend, then the targets."""
    meta = results.meta
    lines = [
        "# auth_service benchmark",
        "",
        f"{meta.date}, {'quick (BENCH_QUICK=1)' if meta.quick else 'full'} run, "
        f"{meta.cpus} CPUs, Python {meta.python}, {meta.workers} uvicorn worker(s), "
        f"auth_service at {meta.git}, "
        f"{meta.plan.cell_s} s per cell after {meta.plan.warmup_s} s warm-up; "
        f"'under logins' = while {meta.plan.background_logins} other clients log in. "
        f"Total {meta.seconds:.0f} s. Produced by `make bench`.",
        "",
    ]
    for name, backend in results.backends.items():
        lines += _backend_section(name, backend, meta)
    lines += _targets_table(results)
    return "\n".join(lines)

"""`python -m bench.code_flow`: the browser-less authorization-code flow, per backend.

One browser logs in through the real login page once; then C concurrent "relying parties"
repeat authorize-with-the-session-cookie -> code -> token exchange against a running
server (the same BenchServer as `make bench`), and the flows per second and each step's
latency are printed. No argon2 after the one login: this measures the code path itself.
tests/test_hot_path_statements.py holds each step to at most three SQL statements.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from bench.backends import BACKENDS
from bench.plan import HOST, PASSWORD, USERNAME
from bench.results import CodeFlowCell
from bench.server import BenchServer, service_env
from tests.processes import run_cli

__all__ = ["add_client", "describe", "main", "measure"]

CALLBACK = "http://127.0.0.1:9/cb"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _register(server: BenchServer, workdir: Path) -> str:
    """The bench user and a confidential first-party client; the client's secret."""
    status, body = server.call(
        "POST",
        "/register",
        f'{{"username": "{USERNAME}", "password": "{PASSWORD}"}}',
        {"Content-Type": "application/json"},
    )
    assert status == 201, body
    return add_client(server, workdir)


def add_client(server: BenchServer, workdir: Path) -> str:
    """The confidential first-party client the flows use; its secret."""
    output = run_cli(
        server.env,
        workdir,
        "clients",
        "add",
        "bench-rp",
        "--confidential",
        "--first-party",
        "--grants",
        "authorization_code",
        "refresh_token",
        "--scopes",
        "openid",
        "profile",
        "--redirect-uris",
        CALLBACK,
    )
    return str(json.loads(output.splitlines()[-1])["client_secret"])


def _params() -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "bench-rp",
        "redirect_uri": CALLBACK,
        "scope": "openid profile",
        "state": "s",
        "nonce": "n",
    }


async def _log_in(http: httpx.AsyncClient) -> None:
    """Through the real pages once: the client keeps the session cookie."""
    response = await http.get("/authorize", params=_params())
    location = response.headers["location"]
    page = await http.get(location)
    match = _CSRF.search(page.text)
    assert match is not None, page.text
    form = {"csrf_token": match.group(1), "username": USERNAME, "password": PASSWORD}
    answer = await http.post(location, data=form)
    assert answer.status_code == 303, answer.text
    resumed = await http.get(answer.headers["location"])
    assert "code=" in resumed.headers["location"], resumed.headers


async def _flows(
    http: httpx.AsyncClient, secret: str, until: float, steps: dict[str, list[float]]
) -> int:
    done = 0
    while time.perf_counter() < until:
        started = time.perf_counter()
        response = await http.get("/authorize", params=_params())
        code = parse_qs(urlsplit(response.headers["location"]).query)["code"][0]
        issued = time.perf_counter()
        token = await http.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": CALLBACK,
                "client_id": "bench-rp",
                "client_secret": secret,
            },
        )
        assert token.status_code == 200, token.text
        finished = time.perf_counter()
        steps["authorize"].append(issued - started)
        steps["token"].append(finished - issued)
        done += 1
    return done


async def _measure(
    server: BenchServer, secret: str, seconds: float, concurrency: int
) -> CodeFlowCell:
    base = f"http://{HOST}:{server.port}"
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as http:
        await _log_in(http)
        steps: dict[str, list[float]] = {"authorize": [], "token": []}
        await _flows(http, secret, time.perf_counter() + 0.5, {"authorize": [], "token": []})
        cpu_before = sum(server.cpu_seconds())
        started = time.perf_counter()
        until = started + seconds
        counts = await asyncio.gather(
            *(_flows(http, secret, until, steps) for _ in range(concurrency))
        )
        elapsed = time.perf_counter() - started
        cpu = sum(server.cpu_seconds()) - cpu_before
    mean = {step: statistics.fmean(values) * 1000 for step, values in steps.items()}
    flows = sum(counts)
    return CodeFlowCell(
        concurrency,
        flows / elapsed,
        mean["authorize"],
        mean["token"],
        server_cpu_ms_per_flow=cpu * 1000 / flows if flows else 0.0,
    )


def measure(server: BenchServer, secret: str, seconds: float, concurrency: int) -> CodeFlowCell:
    """Log the bench user in once through the pages, then run the flows for `seconds`."""
    return asyncio.run(_measure(server, secret, seconds, concurrency))


def describe(cell: CodeFlowCell) -> str:
    """One line: flows per second and each step's mean latency."""
    return (
        f"c={cell.concurrency}: {cell.flows_per_s:,.0f} code flows/s (authorize mean "
        f"{cell.authorize_mean_ms:.2f} ms, token mean {cell.token_mean_ms:.2f} ms); server "
        f"{cell.server_cpu_ms_per_flow:.2f} ms CPU per flow = "
        f"{cell.flows_per_server_core:,.0f} flows/s per core"
    )


def main(argv: list[str] | None = None) -> int:
    """Print one line per backend: code flows per second and each step's mean latency."""
    parser = argparse.ArgumentParser(prog="python -m bench.code_flow", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--backend", choices=sorted(BACKENDS), action="append")
    args = parser.parse_args(argv)
    for name in args.backend or list(BACKENDS):
        workdir = Path(tempfile.mkdtemp(prefix=f"auth_bench_code_{name}_"))
        try:
            with BACKENDS[name](workdir) as overrides:
                server = BenchServer(name, service_env(overrides), workdir)
                server.start()
                try:
                    secret = _register(server, workdir)
                    cell = measure(server, secret, args.seconds, args.concurrency)
                    print(f"{name} {describe(cell)}", flush=True)
                finally:
                    server.stop()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

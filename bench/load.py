"""A bounded closed-loop HTTP/1.1 load generator on raw asyncio streams, loopback only.

Each of `concurrency` keep-alive connections sends one request, waits for the whole
response, and sends the next, until the job's time is up or its request budget is spent
(every loop is bounded in both). Responses completed after the warm-up and before the end
are counted; latency is measured per request from the first byte written to the last byte
read.

Run as a worker process (`python -m bench.load`): one JSON `Job` per stdin line in, one JSON
`LoadResult` (or `{"error": ...}`) per stdout line out. `bench/workers.py` keeps two such
workers, one for the measured load and one for the background login load, so neither shares
an event loop with the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Literal

from pydantic import TypeAdapter

__all__ = ["Job", "JobKind", "Latency", "LoadResult", "RequestSpec", "run_job", "summarize"]

HOST = "127.0.0.1"  # never anything else: the benchmark only talks to loopback


class ProtocolError(Exception):
    """The server answered something this minimal client does not handle."""


@dataclass(frozen=True)
class RequestSpec:
    """One request template; `label` groups latencies (e.g. unknown vs wrong password)."""

    label: str
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""

    def encode(self, port: int, body: str | None = None) -> bytes:
        """The request as bytes on the wire (HTTP/1.1, keep-alive)."""
        payload = (self.body if body is None else body).encode()
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {HOST}:{port}"]
        lines += ["User-Agent: auth-bench/1", "Accept: */*"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        if payload or self.method != "GET":
            lines.append(f"Content-Length: {len(payload)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


JobKind = Literal["static", "refresh", "register"]


@dataclass
class Job:
    """What to send, how many at once, and for how long.

    kind: `static` cycles through `requests`; `refresh` walks one refresh-token chain per
    connection (each 200 gives the next token); `register` sends a fresh username each time.
    """

    port: int
    requests: list[RequestSpec]
    concurrency: int
    duration_s: float
    warmup_s: float = 0.0
    max_requests: int = 1_000_000
    timeout_s: float = 10.0
    expect: tuple[int, ...] = (200,)
    kind: JobKind = "static"
    refresh_tokens: list[str] = field(default_factory=list)
    username_prefix: str = "bench"
    password: str = ""

    def to_json(self) -> str:
        """The job as one JSON line's content."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Job:
        """Parse and validate a job sent by `to_json`."""
        return _JOB.validate_json(line)


@dataclass(frozen=True)
class Latency:
    """Nearest-rank latency summary in milliseconds; all zero when count is 0."""

    count: int = 0
    mean_ms: float = 0.0
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0


@dataclass(frozen=True)
class LoadResult:
    """What the clients of one job saw: counts, statuses, errors, latencies, client CPU."""

    concurrency: int
    measured_s: float
    ok: int
    ok_per_s: float
    statuses: dict[str, int]
    errors: dict[str, int]
    sent: int
    responses_total: int
    wall_s: float
    client_cpu_ms_per_response: float
    client_cores: float
    budget_exhausted: bool
    latency: Latency
    by_label: dict[str, Latency]
    by_status: dict[str, Latency]  # latencies of unexpected statuses, e.g. "503"
    refresh_tokens: list[str] = field(default_factory=list)  # refresh jobs: the chains' ends

    def to_json(self) -> str:
        """The result as one JSON line's content."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line: str) -> LoadResult:
        """Parse and validate a result sent by `to_json`."""
        return _RESULT.validate_json(line)


_JOB = TypeAdapter(Job)
_RESULT = TypeAdapter(LoadResult)


class Connection:
    """One keep-alive HTTP/1.1 connection to 127.0.0.1:port, reopened after errors."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, data: bytes) -> tuple[int, bytes]:
        """Send one request and read its whole response: (status, body)."""
        if self._writer is None:
            # asyncio sets TCP_NODELAY on the TCP sockets it creates.
            self._reader, self._writer = await asyncio.open_connection(HOST, self._port)
        assert self._reader is not None
        self._writer.write(data)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"transfer-encoding":
                raise ProtocolError("chunked responses are not supported")
        body = await self._reader.readexactly(length) if length else b""
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        """Drop the connection; the next request opens a new one."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


def summarize(samples: list[float]) -> Latency:
    """count, mean, p50, p90, p99 and max of latencies given in seconds, in milliseconds."""
    if not samples:
        return Latency()
    ordered = sorted(samples)

    def pick(q: float) -> float:
        index = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
        return ordered[index] * 1000

    return Latency(
        count=len(ordered),
        mean_ms=sum(ordered) / len(ordered) * 1000,
        p50_ms=pick(0.50),
        p90_ms=pick(0.90),
        p99_ms=pick(0.99),
        max_ms=ordered[-1] * 1000,
    )


def _body_maker(job: Job) -> Callable[[int, int], tuple[RequestSpec, str | None]]:
    """For connection i and its n-th request: the template and the body to send."""
    if job.kind == "refresh":
        if job.concurrency > len(job.refresh_tokens):
            raise ValueError("a refresh job needs one refresh token per connection")
        spec = job.requests[0]

        def refresh_body(i: int, _: int) -> tuple[RequestSpec, str | None]:
            return spec, f"grant_type=refresh_token&refresh_token={job.refresh_tokens[i]}"

        return refresh_body
    if job.kind == "register":
        spec = job.requests[0]

        def register_body(i: int, n: int) -> tuple[RequestSpec, str | None]:
            body = {"username": f"{job.username_prefix}{i}_{n}", "password": job.password}
            return spec, json.dumps(body)

        return register_body

    def static_body(i: int, n: int) -> tuple[RequestSpec, str | None]:
        return job.requests[(i + n) % len(job.requests)], None

    return static_body


async def run_job(job: Job) -> LoadResult:
    """Run one job to completion and return its counts and latency summaries."""
    make = _body_maker(job)
    cpu_start = time.process_time()
    start = time.perf_counter()
    measure_from = start + job.warmup_s
    end = measure_from + job.duration_s
    budget = [job.max_requests]
    latencies: dict[str, list[float]] = {}
    statuses: dict[str, int] = {}
    unexpected: dict[str, list[float]] = {}  # latencies of other statuses, e.g. 503
    errors: dict[str, int] = {}
    ok = [0]
    responses = [0]  # every response of the whole job, warm-up included

    async def drive(i: int) -> None:
        connection = Connection(job.port)
        n = 0
        try:
            while time.perf_counter() < end and budget[0] > 0:
                budget[0] -= 1
                spec, body = make(i, n)
                n += 1
                data = spec.encode(job.port, body)
                began = time.perf_counter()
                try:
                    async with asyncio.timeout(job.timeout_s):
                        status, payload = await connection.request(data)
                except (OSError, TimeoutError, EOFError, ValueError, ProtocolError) as exc:
                    connection.close()
                    kind = type(exc).__name__
                    errors[kind] = errors.get(kind, 0) + 1
                    await asyncio.sleep(0.01)  # do not spin on a refused connection
                    continue
                done = time.perf_counter()
                responses[0] += 1
                if job.kind == "refresh" and status == 200:
                    job.refresh_tokens[i] = json.loads(payload)["refresh_token"]
                if not measure_from <= done <= end:
                    continue
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                if status in job.expect:
                    ok[0] += 1
                    latencies.setdefault(spec.label, []).append(done - began)
                else:
                    unexpected.setdefault(str(status), []).append(done - began)
        finally:
            connection.close()

    limit = job.warmup_s + job.duration_s + job.timeout_s + 5
    async with asyncio.timeout(limit):
        await asyncio.gather(*(drive(i) for i in range(job.concurrency)))
    wall = time.perf_counter() - start
    client_cpu = time.process_time() - cpu_start
    everything = [sample for samples in latencies.values() for sample in samples]
    return LoadResult(
        concurrency=job.concurrency,
        measured_s=job.duration_s,
        ok=ok[0],
        ok_per_s=ok[0] / job.duration_s,
        statuses=statuses,
        errors=errors,
        sent=job.max_requests - budget[0],
        responses_total=responses[0],
        wall_s=wall,
        client_cpu_ms_per_response=client_cpu * 1000 / max(1, responses[0]),
        client_cores=client_cpu / wall,
        budget_exhausted=budget[0] <= 0,
        latency=summarize(everything),
        by_label={label: summarize(samples) for label, samples in latencies.items()},
        by_status={code: summarize(samples) for code, samples in unexpected.items()},
        refresh_tokens=job.refresh_tokens if job.kind == "refresh" else [],
    )


def _runner() -> asyncio.Runner:
    """An event loop runner, on uvloop when installed (it comes with uvicorn[standard])."""
    try:
        import uvloop
    except ImportError:
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


def main() -> int:
    """Worker loop: one JSON job per stdin line, one JSON result per stdout line."""
    with _runner() as runner:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                answer = runner.run(run_job(Job.from_json(line))).to_json()
            except Exception as exc:  # report, keep serving: the orchestrator decides
                answer = json.dumps({"error": f"{type(exc).__name__}: {exc}"})
            sys.stdout.write(answer + "\n")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(main())

"""`serve`: uvicorn on the public and the management socket, in one or several workers.

Both sockets are bound here, before any worker starts, and handed to every worker's one
uvicorn server (as uvicorn does with its own socket for `--workers`): the workers share
both listening sockets, graceful shutdown covers both, and no port is bound twice.
Before that, the schema is checked and the per-run metrics directory is prepared (see
auth_service/metrics.py); nothing here imports prometheus-client, which must read
PROMETHEUS_MULTIPROC_DIR only once it is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from auth_service.config import Settings
from auth_service.errors import SchemaBehind

__all__ = ["metrics_directory", "refuse_outdated_schema", "serve"]

log = logging.getLogger(__name__)

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"  # the name prometheus-client reads
_STARTUP_FAILURE = 3  # uvicorn's exit status when the app did not start
_SCHEMA_CHECK_TIMEOUT_SECONDS = 5.0


@contextlib.contextmanager
def metrics_directory(workers: int) -> Iterator[Path | None]:
    """A clean multiprocess metrics directory for this run, set in the environment.

    An operator's PROMETHEUS_MULTIPROC_DIR is emptied of earlier runs' files (stale
    counters would add up with the new ones); otherwise, with several workers, a temporary
    directory is made for the run and removed when the supervisor exits. Workers inherit
    the variable. One worker needs none: its own registry is the whole picture (and
    uvicorn ends a lone server by re-raising SIGTERM, which would skip the removal).
    """
    given = os.environ.get(MULTIPROCESS_DIR_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield directory
        return
    if workers == 1:
        yield None
        return
    directory = Path(tempfile.mkdtemp(prefix="auth-service-metrics-"))
    os.environ[MULTIPROCESS_DIR_ENV] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROCESS_DIR_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)


def refuse_outdated_schema(settings: Settings) -> None:
    """Raise SchemaBehind if the database lacks this code's migrations.

    An unreachable database is not refused here: the service starts, answers 503 and
    `/readyz` says so until the database is back.
    """
    from auth_service.db import create_engine
    from auth_service.db.migrate import code_heads, database_revisions, schema_is_behind

    async def current() -> frozenset[str] | None:
        engine = create_engine(settings.effective_database_url, pool_size=1)
        try:
            async with asyncio.timeout(_SCHEMA_CHECK_TIMEOUT_SECONDS):
                return await database_revisions(engine)
        except Exception as exc:
            log.warning("could not read the schema revision: %s", type(exc).__name__)
            return None
        finally:
            await engine.dispose()

    revisions = asyncio.run(current())
    if revisions is not None and schema_is_behind(revisions):
        raise SchemaBehind(
            f"the database schema is at {', '.join(sorted(revisions)) or 'no revision'}, "
            f"this code needs {', '.join(sorted(code_heads()))}: run `auth-service migrate` "
            "(or start the image with AUTH_MIGRATE_ON_START=true)"
        )


def _listen(host: str, port: int, variable: str, *, public: bool) -> socket.socket:
    """A socket on host:port (0: the kernel picks). The public one as uvicorn binds it for
    its workers (bound, inheritable, listening once a server starts on it); the management
    one listening at once."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        if not public:
            return socket.create_server((host, port), family=family)
        sock = socket.socket(family=family)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise SystemExit(
            f"auth-service: cannot listen on {host}:{port}: {exc.strerror} "
            f"(set {variable} to a free port)"
        ) from None
    sock.set_inheritable(True)
    return sock


def _bound(settings: Settings, sockets: list[socket.socket]) -> Settings:
    """The settings with the ports actually bound: AUTH_PORT=0 (or the management port 0)
    asks the kernel for a free one, and the issuer, the port dispatch and the workers (which
    read the environment again) must all see the port it picked."""
    port, management_port = (sock.getsockname()[1] for sock in sockets)
    if (port, management_port) == (settings.port, settings.management_port):
        return settings
    os.environ["AUTH_PORT"], os.environ["AUTH_MANAGEMENT_PORT"] = str(port), str(management_port)
    return settings.model_copy(update={"port": port, "management_port": management_port})


def _write_ports_file(path: Path, port: int, management_port: int) -> None:
    """{"port": P, "management_port": M} at `path`, replaced atomically (never half-written)."""
    staged = path.with_name(f"{path.name}.{os.getpid()}")
    staged.write_text(json.dumps({"port": port, "management_port": management_port}))
    os.replace(staged, path)


def serve(settings: Settings, options: dict[str, Any]) -> int:
    """Run uvicorn with `options` on AUTH_HOST:AUTH_PORT and AUTH_MANAGEMENT_PORT.

    Both sockets are bound before the app is built, then the ports bound are logged and
    written to AUTH_PORTS_FILE (tests start servers on port 0 and read it).
    """
    from auth_service.serving import DrainingServer, ServingConfig
    from auth_service.supervisor import run_workers

    refuse_outdated_schema(settings)
    sockets = [
        _listen(settings.host, settings.port, "AUTH_PORT", public=True),
        _listen(settings.host, settings.management_port, "AUTH_MANAGEMENT_PORT", public=False),
    ]
    settings = _bound(settings, sockets)
    if settings.ports_file is not None:
        _write_ports_file(settings.ports_file, settings.port, settings.management_port)
    options = {**options, "port": settings.port}
    log.info(
        "listening on http://%s:%d, management (/metrics, /readyz, /healthz) on http://%s:%d",
        settings.host,
        settings.port,
        settings.host,
        settings.management_port,
    )
    with metrics_directory(settings.workers):
        if settings.workers == 1:
            from auth_service.app import create_serving_app

            config = ServingConfig(create_serving_app(settings), **options)
        else:
            # Each worker builds its app (and its own pools) from the settings again.
            config = ServingConfig(
                "auth_service.cli:worker_app", factory=True, workers=settings.workers, **options
            )
        if settings.workers > 1:
            return 0 if run_workers(config, sockets) else _STARTUP_FAILURE
        server = DrainingServer(config)
        with contextlib.suppress(KeyboardInterrupt):
            server.run(sockets=sockets)
        if not server.started:
            return _STARTUP_FAILURE
    return 0

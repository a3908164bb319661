"""Structured JSON logs with the request id and client address of the current request.

The request context lives in context variables set by the HTTP middleware, so every log
line and audit event of a request carries them without passing them around. Nothing here
formats secrets: callers log ids, never passwords, hashes or tokens; uvicorn's access log
gets the path without its query string, where clients put passwords and tokens.
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "JsonFormatter",
    "PathWithoutQuery",
    "client_ip_var",
    "configure_logging",
    "request_id_var",
]

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request context, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, var in (("request_id", request_id_var), ("client_ip", client_ip_var)):
            value = var.get()
            if value is not None and not hasattr(record, name):
                entry[name] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class PathWithoutQuery(logging.Filter):
    """Drop the query string from uvicorn's access log lines (`?password=`, `?access_token=`).

    uvicorn logs `'%s - "%s %s HTTP/%s" %d'` with (client, method, path?query, version,
    status); only the path is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], args[2].split("?", 1)[0], *args[3:])
        return True


def configure_logging(level: str, *, json_format: bool) -> None:
    """Route every logger (ours, uvicorn's, alembic's) to stderr in one format."""
    handler = logging.StreamHandler()
    if json_format:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    access = logging.getLogger("uvicorn.access")
    for existing in [f for f in access.filters if isinstance(f, PathWithoutQuery)]:
        access.removeFilter(existing)
    access.addFilter(PathWithoutQuery())

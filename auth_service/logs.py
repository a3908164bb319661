"""Logs: JSON lines for machines, readable colour lines on a terminal, with request context.

`auto` (the default) picks by whether stderr is a terminal: `make run` in a shell reads
well, a container's or a service manager's log stays one JSON object per line.

The request context lives in context variables set by the HTTP middleware, so every log
line and audit event of a request carries them without passing them around. Nothing here
formats secrets: callers log ids, never passwords, hashes or tokens; uvicorn's access log
gets the path without its query string, where clients put passwords and tokens.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

__all__ = [
    "BRIEF",
    "JsonFormatter",
    "PathWithoutQuery",
    "TextFormatter",
    "choose_formatter",
    "client_ip_var",
    "configure_logging",
    "request_id_var",
]

LogFormat = Literal["auto", "json", "text"]
BRIEF = "_brief"  # see TextFormatter; underscored, so JSON records leave it out

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged.
# uvicorn's `color_message` repeats the message with ANSI escapes: never in JSON.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
# Loggers that say nothing an operator needs at INFO (alembic: "setup plugin ..." x7).
_QUIET = ("alembic.runtime.plugins",)
_COLOURS = {"DEBUG": "36", "INFO": "32", "WARNING": "33", "ERROR": "31", "CRITICAL": "1;31"}


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


class TextFormatter(logging.Formatter):
    """`time LEVEL logger: message`, the level (and uvicorn's highlights) in colour if asked.

    A record logged with `extra={BRIEF: True}` (a command that failed) shows its
    exception as `(Type: message)` at the end of its one line, its traceback only at DEBUG;
    other records keep their tracebacks (a 500 while developing).
    """

    def __init__(self, *, colour: bool) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self._colour = colour

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        coloured = getattr(record, "color_message", None)
        if self._colour and isinstance(coloured, str):
            message = coloured % record.args if record.args else coloured
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            brief = getattr(record, BRIEF, False)
            if not brief or logging.getLogger().isEnabledFor(logging.DEBUG):
                message += "\n" + self.formatException(record.exc_info)
            else:
                message += f" ({type(exc).__name__}: {exc})".replace("\n", " ")
        level = record.levelname
        if self._colour:
            level = f"\x1b[{_COLOURS.get(level, '0')}m{level}\x1b[0m"
        return f"{self.formatTime(record)} {level} {record.name}: {message}"


def choose_formatter(log_format: LogFormat, stream: TextIO) -> logging.Formatter:
    """JSON unless asked for text, or `auto` on a terminal (then in colour)."""
    tty = stream.isatty()
    if log_format == "json" or (log_format == "auto" and not tty):
        return JsonFormatter()
    return TextFormatter(colour=tty)


def configure_logging(level: str, log_format: LogFormat, stream: TextIO | None = None) -> None:
    """Route every logger (ours, uvicorn's, alembic's) to stderr in one format."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(choose_formatter(log_format, stream))
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
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))

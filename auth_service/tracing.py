"""Optional OpenTelemetry tracing: spans for requests, SQL, Redis and argon2.

Off unless AUTH_OTEL_ENABLED; the packages come with the `otel` extra, and nothing imports
them while tracing is off, so the service runs without them. Spans go over OTLP/HTTP to
AUTH_OTEL_ENDPOINT (or what the standard OTEL_EXPORTER_OTLP_* variables say). Each app
has its own TracerProvider (tests pass one with an in-memory exporter); the global one is
left alone. Spans carry no secrets: the instrumentations and sql_span record statements
with bound parameters as placeholders, Redis commands without their arguments' values
beyond keys.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from auth_service.config import Settings
from auth_service.errors import AuthServiceError

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["Tracing", "TracingUnavailable", "load_tracing"]

SpanFactory = Callable[[str], AbstractContextManager[object]]
_SERVER_SPAN = "auth_service.server_span"  # where the request's span waits in the scope


class TracingUnavailable(AuthServiceError):
    """AUTH_OTEL_ENABLED is set but the OpenTelemetry packages are not installed."""

    code = "tracing_unavailable"
    default_description = (
        "AUTH_OTEL_ENABLED=true needs the OpenTelemetry packages: pip install 'auth-service[otel]'"
    )


class Tracing:
    """The TracerProvider of one app and the instrumentation it installed."""

    def __init__(self, provider: Any, *, owns_provider: bool) -> None:
        self.provider = provider
        self._owns_provider = owns_provider
        self._tracer = provider.get_tracer("auth_service")
        self._sql_instrumented = False

    def span(self, name: str) -> AbstractContextManager[object]:
        """A span named `name`, child of the current one (e.g. the request's)."""
        manager: AbstractContextManager[object] = self._tracer.start_as_current_span(name)
        return manager

    @staticmethod
    def middleware_class() -> Any:
        """ASGI middleware opening a span per request (method and route, status, errors)."""
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        return OpenTelemetryMiddleware

    def middleware_options(self) -> dict[str, Any]:
        """Options of `middleware_class()`: this provider, spans named by route template."""
        return {
            "tracer_provider": self.provider,
            "default_span_details": _method_only,
            "server_request_hook": _remember_server_span,
            "client_response_hook": _name_by_route,
            "exclude_spans": ["receive"],
        }

    def sql_span(self, system: str) -> Callable[[str], AbstractContextManager[object]]:
        """Spans for the statements the repositories run themselves (asyncpg on the pool's
        connections, the SQLite worker), which no engine event sees: named by the SQL
        operation, with `db.system` and the statement text (placeholders, never values)."""
        from opentelemetry.trace import SpanKind

        def span(sql: str) -> AbstractContextManager[object]:
            words = sql.split(None, 1)
            manager: AbstractContextManager[object] = self._tracer.start_as_current_span(
                words[0].upper() if words else "SQL",
                kind=SpanKind.CLIENT,
                attributes={"db.system": system, "db.statement": sql},
            )
            return manager

        return span

    def instrument(self, engine: AsyncEngine | None, redis: Redis | None) -> None:
        """Spans for this engine's statements (if one remains) and this Redis client's commands."""
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

        instrumentor = SQLAlchemyInstrumentor()
        if engine is not None and not instrumentor.is_instrumented_by_opentelemetry:
            # Its version pin lags SQLAlchemy 2.1, whose event API it uses unchanged.
            instrumentor.instrument(
                engine=engine.sync_engine, tracer_provider=self.provider, skip_dep_check=True
            )
            self._sql_instrumented = True
        if redis is not None:
            RedisInstrumentor.instrument_client(redis, tracer_provider=self.provider)

    def close(self) -> None:
        """Remove the SQL instrumentation and flush spans still buffered."""
        if self._sql_instrumented:
            from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

            SQLAlchemyInstrumentor().uninstrument()
            self._sql_instrumented = False
        if self._owns_provider:
            with contextlib.suppress(Exception):
                self.provider.shutdown()


def _method_only(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return str(scope.get("method", "HTTP")), {}


def _remember_server_span(span: Any, scope: dict[str, Any]) -> None:
    scope[_SERVER_SPAN] = span


def _name_by_route(_: Any, scope: dict[str, Any], message: dict[str, Any]) -> None:
    """Rename the request's span to `METHOD /route/{template}` once routing has matched.

    Named after the raw path (the instrumentation's default), spans would carry user names
    and session ids (`/admin/users/alice/...`); until routing is done only the method is
    known.
    """
    route = getattr(scope.get("route"), "path", None)
    server_span = scope.get(_SERVER_SPAN)
    if message.get("type") == "http.response.start" and server_span is not None:
        server_span.update_name(f"{scope.get('method', 'HTTP')} {route or 'unmatched'}")


def _otlp_provider(settings: Settings) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: settings.otel_service_name}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint))
    )
    return provider


def load_tracing(settings: Settings, provider: Any = None) -> Tracing | None:
    """Tracing for an app, or None when off; raises TracingUnavailable if not installed."""
    if not settings.otel_enabled:
        return None
    try:
        import opentelemetry.instrumentation.asgi
        import opentelemetry.instrumentation.redis
        import opentelemetry.instrumentation.sqlalchemy
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        raise TracingUnavailable from exc
    if provider is not None:
        return Tracing(provider, owns_provider=False)
    return Tracing(_otlp_provider(settings), owns_provider=True)

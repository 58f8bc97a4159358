"""OpenTelemetry traces: inbound request → dispatch → upstream call, off unless an exporter is set.

`BASTION_OTEL_EXPORTER=otlp` sends spans over OTLP/HTTP (extra `otel`; endpoint from
`BASTION_OTEL_ENDPOINT`, else the exporter's own `OTEL_EXPORTER_OTLP_*` variables), `console`
prints them. A client's W3C `traceparent` makes Bastion's spans children of the client's, and the
trace id is the request's correlation id, so a trace and its audit records share one id. Requests
to HTTP origins carry the `traceparent` of Bastion's upstream span (`outbound_headers`), so an
origin that traces too continues the same trace; with tracing off, none is sent.

Off, `span` is a `nullcontext`: the hot path pays one attribute check. The tracer provider is this
process's own (not the global one), so two Bastions in one test process keep their spans apart.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, Literal

from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["Exporter", "Tracing", "outbound_headers"]

Exporter = Literal["none", "otlp", "console"]

_KINDS = {"server": SpanKind.SERVER, "client": SpanKind.CLIENT, "internal": SpanKind.INTERNAL}


class _Headers(Getter[list[tuple[bytes, bytes]]]):
    """Reads W3C trace context from an ASGI scope's raw headers."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode()
        values = [value.decode("latin-1") for name, value in carrier if name.lower() == wanted]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


_PROPAGATOR = TraceContextTextMapPropagator()


def outbound_headers() -> dict[str, str]:
    """The W3C `traceparent` for a request made inside the current span; empty outside one (tracing
    off: a context variable read and a check). Never `tracestate`: spans inherit the client's, and
    it would carry the client's own text to the origin, past every check of the request."""
    if not get_current_span().get_span_context().is_valid:
        return {}
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return {"traceparent": carrier["traceparent"]} if "traceparent" in carrier else {}


class Tracing:
    def __init__(
        self, exporter: Exporter = "none", *, endpoint: str | None = None, service: str = "bastion", version: str = ""
    ) -> None:
        self._provider: Any = None
        self._tracer: Tracer | None = None
        if exporter == "none":
            return
        # Imported only when tracing is on: the SDK is not needed to run without it.
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

        span_exporter: SpanExporter
        if exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            span_exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        else:
            span_exporter = ConsoleSpanExporter()
        resource = Resource.create({"service.name": service, "service.version": version})
        self._provider = TracerProvider(resource=resource)
        # Exported from a background thread in batches: the request never waits on the collector.
        self._provider.add_span_processor(BatchSpanProcessor(span_exporter, schedule_delay_millis=1000))
        self._tracer = self._provider.get_tracer("bastion", version)
        self._getter = _Headers()

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @contextmanager
    def inbound(self, scope: Mapping[str, Any], name: str) -> Iterator[Span]:
        """The server span of one HTTP request, a child of the client's `traceparent` if it sent one."""
        assert self._tracer is not None
        context = _PROPAGATOR.extract(scope.get("headers") or [], getter=self._getter)
        with self._tracer.start_as_current_span(
            name, context=context, kind=SpanKind.SERVER, record_exception=False, set_status_on_exception=False
        ) as span:
            yield span

    def span(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        *,
        kind: Literal["server", "client", "internal"] = "internal",
    ) -> AbstractContextManager[Span | None]:
        if self._tracer is None:
            return nullcontext()
        # Exceptions are not recorded (their messages and stacks could carry data): `failed` marks
        # the span with the error's code instead.
        return self._tracer.start_as_current_span(
            name,
            kind=_KINDS[kind],
            attributes={k: v for k, v in (attributes or {}).items() if v not in (None, "")},
            record_exception=False,
            set_status_on_exception=False,
        )

    @staticmethod
    def failed(span: Span | None, error: BaseException) -> None:
        """Mark a span failed with the error's code only (never a message that could carry data)."""
        if span is not None:
            code = getattr(error, "label", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, str(code)))

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()  # exports what is still batched

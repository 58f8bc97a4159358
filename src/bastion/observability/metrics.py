"""Prometheus metrics: what `GET /metrics` shows, kept in memory by prometheus-client.

One `Metrics` per process (its own registry, so several Bastions in one test process do not mix
their counts). Every label takes a small, closed set of values: plane, HTTP method and status,
JSON-RPC method, outcome, an error's code (`not_found`, `forbidden`...), a stage name, an origin's
name. Never a principal, a token, an argument or a path with ids in it.

The per-request families (requests, latencies, stages) are `bastion.observability.loop_metrics`'
lock-free ones, recorded on the event loop's thread; the rare ones (denials, errors) are
prometheus-client's own.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, GCCollector, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bastion.errors import BastionError
from bastion.observability.loop_metrics import LoopCounter, LoopHistogram

__all__ = ["CONTENT_TYPE", "Gauge", "Metrics", "plane_of"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Seconds: from a sub-millisecond cached answer to an upstream timeout.
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# (name, help, value) read at each scrape: pool and queue sizes.
Gauge = tuple[str, str, float]


def plane_of(path: str) -> str:
    """Which plane a request path belongs to (a metrics label and the audit record's kind)."""
    if path.startswith("/servers/"):
        return "mcp"
    if path.startswith("/api/"):
        return "api"
    if path.startswith(("/oauth/", "/auth/", "/connect/", "/.well-known/")):
        return "oauth"
    if path == "/admin" or path.startswith("/admin/"):
        return "console"
    return "other"


def _frozen() -> list[Gauge]:
    return [("bastion_gc_frozen_objects", "Objects frozen out of garbage collection at start", gc.get_freeze_count())]


class _Gauges(Collector):
    def __init__(self) -> None:
        self.sources: list[Callable[[], Iterable[Gauge]]] = []

    def collect(self) -> Iterator[Metric]:
        for source in self.sources:
            for name, help_text, value in source():
                family = GaugeMetricFamily(name, help_text)
                family.add_metric([], value)
                yield family

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read at scrape time only


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._requests = LoopCounter(
            "bastion_http_requests", "HTTP requests answered, by plane, method and status",
            ["plane", "method", "status"], r,
        )  # fmt: skip
        self._latency = LoopHistogram(
            "bastion_http_request_duration_seconds", "HTTP request latency by plane", ["plane"], _BUCKETS, r
        )
        self._denials = Counter(
            "bastion_denials", "Requests refused by rule (authentication, authorization, rate limits), by reason",
            ["plane", "reason"], registry=r,
        )  # fmt: skip
        self._errors = Counter(
            "bastion_request_errors", "Requests that failed for another reason, by code", ["plane", "code"], registry=r
        )
        self._mcp = LoopCounter(
            "bastion_mcp_requests", "MCP requests dispatched, by method and outcome", ["method", "outcome"], r
        )
        self._mcp_latency = LoopHistogram(
            "bastion_mcp_request_duration_seconds", "MCP request latency by method", ["method"], _BUCKETS, r
        )
        self._upstream = LoopCounter(
            "bastion_upstream_calls", "Calls to origins, by origin and outcome (ok or an error code)",
            ["origin", "outcome"], r,
        )  # fmt: skip
        self._upstream_latency = LoopHistogram(
            "bastion_upstream_call_duration_seconds", "Latency of calls to origins", ["origin"], _BUCKETS, r
        )
        self._stages = LoopHistogram(
            "bastion_stage_duration_seconds",
            "Time spent in each stage of the request path (authenticate, authorize, pipeline_request, forward, "
            "pipeline_response, audit)",
            ["stage"], _BUCKETS, r,
        )  # fmt: skip
        self._gauges = _Gauges()
        r.register(self._gauges)
        # The process itself, read at scrape time: CPU, memory, file descriptors, and the garbage
        # collector's passes per generation (what `bastion serve` froze at start is a gauge below).
        ProcessCollector(registry=r)
        GCCollector(registry=r)
        self.gauges(_frozen)

    # --- recording (the hot path) -------------------------------------------------------------
    def http(self, plane: str, method: str, status: int, seconds: float) -> None:
        self._requests.inc((plane, method, str(status)))
        self._latency.observe((plane,), seconds)

    def refused(self, plane: str, error: BaseException) -> None:
        """A request that did not succeed: a denial by its reason, anything else by its code."""
        if isinstance(error, BastionError):
            if error.is_denial:
                self._denials.labels(plane, error.label).inc()
            else:
                self._errors.labels(plane, error.label).inc()
        else:
            self._errors.labels(plane, type(error).__name__).inc()

    def mcp(self, method: str, failure: BaseException | None, seconds: float) -> None:
        self._mcp.inc((method, _outcome(failure)))
        self._mcp_latency.observe((method,), seconds)

    def upstream(self, origin: str, failure: BaseException | None, seconds: float) -> None:
        self._upstream.inc((origin, _outcome(failure)))
        self._upstream_latency.observe((origin,), seconds)

    def stage(self, name: str, seconds: float) -> None:
        self._stages.observe((name,), seconds)

    # --- read at scrape time ------------------------------------------------------------------
    def gauges(self, source: Callable[[], Iterable[Gauge]]) -> None:
        self._gauges.sources.append(source)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def sample(self, name: str, **labels: Any) -> float:
        """One sample's current value (0 when never observed): for tests and the support bundle."""
        value = self.registry.get_sample_value(name, {k: str(v) for k, v in labels.items()})
        return 0.0 if value is None else value


def _outcome(failure: BaseException | None) -> str:
    if failure is None:
        return "ok"
    return failure.label if isinstance(failure, BastionError) else type(failure).__name__

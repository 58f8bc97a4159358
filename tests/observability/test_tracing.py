"""OpenTelemetry traces, exported over OTLP/HTTP to a real receiver on loopback: the client's
trace continues through Bastion's server span, the dispatch and the upstream call, and the trace id
is the audit trail's correlation id."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.governance.people import mcp
from tests.harness import inventory_gateway, origin_process, run_bastion


class _Receiver(BaseHTTPRequestHandler):
    spans: list[Span]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scoped in resource.scope_spans:
                self.server.spans.extend(scoped.spans)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[Span]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    server.spans = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1/traces", server.spans  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def test_a_call_is_one_trace_from_the_client_through_the_upstream_call(
    tmp_path: Path, collector: tuple[str, list[Span]]
) -> None:
    endpoint, spans = collector
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    with inventory_gateway(tmp_path, otel_exporter="otlp", otel_endpoint=endpoint) as gw:
        token = gw.token("demo")
        traced = {"traceparent": f"00-{trace_id}-{parent_id}-01"}
        answer = mcp(
            gw, "demo", token, "tools/call", name="get_order", arguments={"order_id": "ORD-1001"}, extra_headers=traced
        )
        assert "result" in answer.json(), answer.text
        assert answer.headers["x-request-id"] == trace_id
        untraced = mcp(gw, "demo", token, "tools/list")
        own_trace = untraced.headers["x-request-id"]

        deadline = time.monotonic() + 10  # the audit trail's correlation id is the trace id
        while len(gw.ok("GET", f"/api/audit/records?correlation_id={trace_id}")) < 2:
            assert time.monotonic() < deadline, "the call's audit records did not reach the store"
            time.sleep(0.05)
    # Bastion stopped: its last spans were exported on shutdown.
    ours = [span for span in spans if span.trace_id.hex() == trace_id]
    by_name = {span.name: span for span in ours}
    server = by_name["POST /servers/{slug}/mcp"]
    dispatch, upstream = by_name["mcp tools/call"], by_name["upstream tools/call"]
    durable = by_name["audit record durable"]
    assert server.kind == Span.SPAN_KIND_SERVER and server.parent_span_id.hex() == parent_id
    assert dispatch.parent_span_id == server.span_id and durable.parent_span_id == dispatch.span_id
    assert upstream.parent_span_id == dispatch.span_id and upstream.kind == Span.SPAN_KIND_CLIENT
    attributes = {a.key: a.value.string_value or a.value.int_value for a in server.attributes}
    assert attributes["http.response.status_code"] == 200 and attributes["bastion.correlation_id"] == trace_id
    assert {a.key: a.value.string_value for a in upstream.attributes}["bastion.origin"] == "inventory"
    # Nothing of the arguments or the token is in any span.
    dumped = b"".join(span.SerializeToString() for span in spans)
    assert b"ORD-1001" not in dumped and token.encode() not in dumped
    # Without a traceparent, Bastion starts the trace, and its id is the request's correlation id.
    assert any(span.trace_id.hex() == own_trace and span.name == "mcp tools/list" for span in spans)


def test_tracing_is_off_by_default(tmp_path: Path) -> None:
    with run_bastion(tmp_path) as gw:
        assert not gw.services.tracing.enabled


def _recorded(log: Path) -> list[dict[str, str | None]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("traced", [True, False], ids=["tracing on", "tracing off"])
def test_an_http_origin_is_sent_bastions_upstream_span_as_its_parent_never_the_clients_header(
    tmp_path: Path, collector: tuple[str, list[Span]], traced: bool
) -> None:
    endpoint, spans = collector
    log = tmp_path / "headers.jsonl"
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    settings: dict[str, Any] = {"otel_exporter": "otlp", "otel_endpoint": endpoint} if traced else {}
    with origin_process("tests.origins.recorder", "--log", str(log)) as url, run_bastion(tmp_path, **settings) as gw:
        gw.add_origin("recorded", url=url)
        gw.publish_server("demo", {"origin": "recorded"})
        log.write_text("")  # discovery's requests were made outside any call
        answer = mcp(
            gw,
            "demo",
            gw.token("demo"),
            "tools/call",
            name="list_stock",
            arguments={},
            extra_headers={"traceparent": f"00-{trace_id}-{parent_id}-01", "tracestate": "vendor=client-text"},
        )
        assert "result" in answer.json(), answer.text
    sent = {entry["traceparent"] for entry in _recorded(log)}
    assert {entry["tracestate"] for entry in _recorded(log)} == {None}  # the client's own text stays here
    if not traced:
        assert sent == {None}  # off: nothing of the client's trace context passes through
        return
    (upstream,) = [s for s in spans if s.name == "upstream tools/call" and s.trace_id.hex() == trace_id]
    assert sent == {f"00-{trace_id}-{upstream.span_id.hex()}-01"}

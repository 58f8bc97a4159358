"""The policy pipeline's own cost per forwarded call, measured in isolation (part of `make bench`).

What `Methods._forward` runs around the origin call: every request stage, then every response
stage, on an echo-like `tools/call` (a one-field argument, a short text result), with the
default settings (all default stages on: rate limit in memory, schema guard, approval check,
DLP both ways, response inspection) and with anonymization turned on as well. The bare proxy
runs none of this: the difference between the two `make bench` builds is this number. CPU is
this process's (user+sys) per call; one stage at a time below shows where it goes.

Run alone: `python -m bench.pipeline` (BENCH_PIPELINE_CALLS, default 20000).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import orjson

from bastion.pipeline.base import CallContext, Item
from bastion.pipeline.chain import REQUEST_ORDER, RESPONSE_ORDER, Pipeline
from bastion.pipeline.rate_limit import RateLimit
from bastion.pipeline.windows import limiter_storage

__all__ = ["measure", "report"]

_DEFINITION = {
    "name": "echo",
    "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}
_RESULT = {"content": [{"type": "text", "text": "hello"}], "isError": False}
# As the snapshot holds them (tenant → scope → stage → fields): one object for the whole run, as a
# snapshot is between changes, so the merged settings are computed once, as in the server.
_POLICIES: dict[str, Any] = {
    "default": {"t": {"global": {"rate_limit": {"per_principal": "100000000/minute"}}}},
    "anonymize": {
        "t": {"global": {"rate_limit": {"per_principal": "100000000/minute"}, "anonymize": {"enabled": True}}}
    },
}


def _context(pipeline: Pipeline, policies: Mapping[str, Any], text: str) -> CallContext:
    settings = pipeline.settings(policies, "t", "bench", "echo", "echo")
    return CallContext(
        method="tools/call",
        item=Item("tool", "echo", "echo", "echo", _DEFINITION),
        params={"name": "echo", "arguments": {"text": text}},
        principal_id="u" * 32,
        principal_name="bench",
        tenant_id="t",
        server="bench",
        settings=settings,
    )


async def _calls(pipeline: Pipeline, policies: Mapping[str, Any], calls: int, text: str) -> float:
    """CPU µs per call of request + response stages."""
    result = {**_RESULT, "content": [{"type": "text", "text": text}]}
    started = time.process_time()
    for _ in range(calls):
        ctx = _context(pipeline, policies, text)
        await pipeline.request(ctx)
        await pipeline.response(ctx, result)
    return (time.process_time() - started) / calls * 1e6


async def _stage_costs(pipeline: Pipeline, calls: int) -> dict[str, float]:
    """Each built-in stage alone (both phases it has), default settings."""
    stages: dict[str, Any] = dict(pipeline.stages())
    costs: dict[str, float] = {}
    for name in dict.fromkeys((*REQUEST_ORDER, *RESPONSE_ORDER)):
        stage = stages[name]
        started = time.process_time()
        for _ in range(calls):
            ctx = _context(pipeline, _POLICIES["default"], "hello")
            await stage.on_request(ctx)
            await stage.on_response(ctx, _RESULT)
        costs[name] = (time.process_time() - started) / calls * 1e6
    return costs


def measure() -> dict[str, Any]:
    calls = int(os.environ.get("BENCH_PIPELINE_CALLS", "20000"))
    pipeline = Pipeline(RateLimit(limiter_storage(None, "bench", 1.0)))
    long_text = ("Order ORD-1001 shipped to the warehouse in Rotterdam on Tuesday. " * 32)[:2048]

    async def run() -> dict[str, Any]:
        await _calls(pipeline, _POLICIES["default"], calls // 10, "hello")  # warm caches
        return {
            "calls": calls,
            "default_us_per_call": await _calls(pipeline, _POLICIES["default"], calls, "hello"),
            "default_2kb_us_per_call": await _calls(pipeline, _POLICIES["default"], calls // 4, long_text),
            "anonymize_us_per_call": await _calls(pipeline, _POLICIES["anonymize"], calls, "hello"),
            "stages_us": await _stage_costs(pipeline, calls // 4),
        }

    results: dict[str, Any] = anyio.run(run)
    return results


def report(results: dict[str, Any], out: Callable[[str], None] = print) -> None:
    out("policy pipeline alone (request + response stages per call, CPU; the bare proxy runs none):")
    out(f"  all default stages:            {results['default_us_per_call']:.0f} µs/call")
    out(f"  default stages, 2 KB text:     {results['default_2kb_us_per_call']:.0f} µs/call")
    out(f"  default + anonymization:       {results['anonymize_us_per_call']:.0f} µs/call")
    out("  per stage: " + ", ".join(f"{name} {us:.0f}" for name, us in results["stages_us"].items()) + " (µs)")


if __name__ == "__main__":
    measured = measure()
    report(measured)
    sys.stdout.write(orjson.dumps(measured).decode() + "\n")

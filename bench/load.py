"""Load generator, run as its own process so its CPU is never charged to the server under test.

`python -m bench.load --url URL --concurrency N --seconds S --warmup W [--token T] [--watch PID ...]`
prints one JSON object: calls, errors and latencies inside the measured window, plus the CPU time
(user+sys, psutil) that each watched process and this generator spent in exactly that window.

Clients (`--client`): `httpx` (one shared keep-alive AsyncClient) or `raw` (one asyncio HTTP/1.1
keep-alive connection per worker, ~10x less client CPU; the default, because on a 2-core box every
client microsecond is taken from the servers being measured).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import psutil

from bench.rawhttp import RawConnection
from bench.wire import check_reply, request_body, request_headers

__all__ = ["main"]

Call = Callable[[int], Awaitable[tuple[int, bytes]]]
Close = Callable[[], Awaitable[None]]
_MAX_ERROR_SAMPLES = 5


@dataclass
class _Window:
    """Shared by the workers: whether completions count, and what they recorded."""

    recording: bool = False
    done: bool = False
    next_id: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _machine_seconds() -> tuple[float, float]:
    """Machine-wide (busy, steal) CPU time: other load on the box, and time the hypervisor took."""
    times = psutil.cpu_times()
    busy = times.user + times.system + sum(getattr(times, name, 0.0) for name in ("nice", "irq", "softirq"))
    return float(busy), float(getattr(times, "steal", 0.0))


async def _worker(call: Call, window: _Window) -> None:
    while not window.done:
        window.next_id += 1
        request_id = window.next_id
        started = time.perf_counter()
        try:
            status, body = await call(request_id)
            problem = check_reply(status, body, request_id)
        except Exception as exc:  # any failure is one error, never the end of the run
            problem = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(0.01)  # a refused connection must not become a hot loop
        elapsed = time.perf_counter() - started
        if not window.recording:
            continue
        if problem is None:
            window.latencies.append(elapsed)
        else:
            window.errors += 1
            if len(window.error_samples) < _MAX_ERROR_SAMPLES:
                window.error_samples.append(problem)


async def _httpx_callers(url: str, headers: dict[str, str], concurrency: int) -> tuple[list[Call], Close]:
    import httpx

    client = httpx.AsyncClient(
        headers=headers,
        limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        timeout=30.0,
        trust_env=False,  # loopback only: never route through an environment proxy
    )

    async def call(request_id: int) -> tuple[int, bytes]:
        response = await client.post(url, content=request_body(request_id))
        return response.status_code, response.content

    return [call] * concurrency, client.aclose


async def _raw_callers(url: str, headers: dict[str, str], concurrency: int) -> tuple[list[Call], Close]:
    connections = [RawConnection(url, headers) for _ in range(concurrency)]

    async def close() -> None:
        for connection in connections:
            connection.close()

    def caller(connection: RawConnection) -> Call:
        async def call(request_id: int) -> tuple[int, bytes]:
            return await connection.post(request_body(request_id))

        return call

    return [caller(connection) for connection in connections], close


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    headers = request_headers(args.token)
    make = _raw_callers if args.client == "raw" else _httpx_callers
    callers, close = await make(args.url, headers, args.concurrency)
    watched = {str(pid): psutil.Process(pid) for pid in args.watch}
    me = psutil.Process()
    window = _Window()
    workers = [asyncio.create_task(_worker(call, window)) for call in callers]
    try:
        await asyncio.sleep(args.warmup)
        before = {pid: _cpu_seconds(p) for pid, p in watched.items()}
        own_before, machine_before = _cpu_seconds(me), _machine_seconds()
        window.recording, started = True, time.perf_counter()
        await asyncio.sleep(args.seconds)
        window.recording, elapsed = False, time.perf_counter() - started
        after = {pid: _cpu_seconds(p) for pid, p in watched.items()}
        own_after, machine_after = _cpu_seconds(me), _machine_seconds()
        window.done = True
        await asyncio.wait(workers, timeout=35)
    finally:
        for task in workers:
            task.cancel()
        await close()
    latencies = sorted(window.latencies)
    return {
        "client": args.client,
        "concurrency": args.concurrency,
        "seconds": elapsed,
        "ok": len(latencies),
        "errors": window.errors,
        "error_samples": window.error_samples,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "mean_ms": (sum(latencies) / len(latencies) * 1000) if latencies else 0.0,
        "cpu_seconds": {pid: after[pid] - before[pid] for pid in watched},
        "loadgen_cpu_seconds": own_after - own_before,
        "machine_busy_seconds": machine_after[0] - machine_before[0],
        "machine_steal_seconds": machine_after[1] - machine_before[1],
    }


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation: every reported value was really observed)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.5)
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--watch", type=int, nargs="*", default=[], help="pids whose CPU time to measure")
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        result = runner.run(_run(args))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()

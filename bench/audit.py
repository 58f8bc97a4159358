"""The audit trail's own cost on the hot path, measured in isolation (part of `make bench`).

Per simulated forwarded call, what the data plane does: build two records (the upstream call and
the inbound request), queue both, and wait until the second is durable (journaled with a shared
`fdatasync`); the background store writer appends them to the tenant's chain in batches (a temp
SQLite database, migrated). CPU is this process's (user+sys) over the window, so the journal and
the batched chain appends are charged to the calls; latency is the wait for durability.

Run alone: `python -m bench.audit` (BENCH_AUDIT_SECONDS, default 3 per level).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import orjson

from bastion.audit.chain import AuditRecord, digest_arguments
from bastion.audit.sink import now_us
from bastion.ids import unique_id
from bastion.store.db import Database
from bastion.store.models import DEFAULT_TENANT
from bastion.store.repos.audit import AuditLog, verify_chain

__all__ = ["call_record", "measure"]

LEVELS = (1, 32)
_ARGS = {"text": "hello"}


def call_record(kind: str, started: float, arguments: Any = _ARGS) -> AuditRecord:
    """One record of a forwarded echo call, as the data plane builds it (also `bench.floor`'s)."""
    return AuditRecord(
        id=unique_id(),
        at_us=now_us(),
        correlation_id=unique_id(),
        kind=kind,
        principal="u" * 32,
        client="api-token:" + "t" * 32,
        server="bench",
        origin="echo" if kind == "upstream.call" else "",
        method="tools/call",
        target="echo",
        args_digest=digest_arguments(arguments),
        decision="allow",
        status="ok",
        latency_us=int((time.perf_counter() - started) * 1_000_000),
    )


async def _level(log: AuditLog, concurrency: int, seconds: float) -> dict[str, float]:
    waits: list[float] = []
    deadline = time.monotonic() + seconds

    async def caller() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            log.record(DEFAULT_TENANT, call_record("upstream.call", started))
            await log.record(DEFAULT_TENANT, call_record("mcp.request", started)).wait()
            waits.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.monotonic()
    async with anyio.create_task_group() as tasks:
        for _ in range(concurrency):
            tasks.start_soon(caller)
    await log.flush()  # what the window queued reaches the chain, and is charged to it
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    waits.sort()
    return {
        "calls": len(waits),
        "calls_per_s": len(waits) / wall,
        "cpu_us_per_call": cpu / len(waits) * 1_000_000,
        "durable_wait_p50_us": statistics.median(waits) * 1_000_000,
        "durable_wait_p99_us": waits[int(len(waits) * 0.99)] * 1_000_000,
    }


async def _measure(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bastion-bench-audit-") as tmp:
        db = Database(f"sqlite+aiosqlite:///{tmp}/audit.db")
        await db.migrate()
        log = AuditLog(db, Path(tmp) / "journal")
        results: dict[str, Any] = {}
        try:
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(log.run)
                await anyio.sleep(0.1)
                await _level(log, 1, min(1.0, seconds))  # warm-up
                for level in LEVELS:
                    results[f"c{level}"] = await _level(log, level, seconds)
                tasks.cancel_scope.cancel()
            await log.aclose()
            checked, broken = await verify_chain(db, DEFAULT_TENANT)
            results["chain_records"], results["chain_intact"] = checked, broken is None
        finally:
            await db.close()
        return results


def measure(seconds: float | None = None) -> dict[str, Any]:
    seconds = seconds if seconds is not None else float(os.environ.get("BENCH_AUDIT_SECONDS") or 3)
    return anyio.run(_measure, seconds)


def report(results: dict[str, Any]) -> None:
    print("audit trail alone (two records per call, the second waited for until journaled; SQLite chain):")
    for level in LEVELS:
        r = results[f"c{level}"]
        print(
            f"  c={level:<3} CPU {r['cpu_us_per_call']:.0f} µs/call, durable wait "
            f"p50 {r['durable_wait_p50_us']:.0f} µs p99 {r['durable_wait_p99_us']:.0f} µs, "
            f"{r['calls_per_s']:.0f} calls/s"
        )
    print(f"  chain after the run: {results['chain_records']} records, intact: {results['chain_intact']}")


if __name__ == "__main__":
    measured = measure()
    report(measured)
    sys.stdout.write(orjson.dumps(measured).decode() + "\n")

"""Two replicas with the Redis bus: what the per-request epoch check costs, and how fast a change travels.

Replica A is also a load target (`b+redis`): the same `tools/call` as the plain `bastion` row. On
PostgreSQL a third Bastion, alone on a database of its own and without Redis, is a load target too
(`b+pg`), so the rows split cleanly: `b+pg` minus `bastion` is what the PostgreSQL store costs per
call against the embedded SQLite, `b+redis` minus `b+pg` is the per-request check of the shared epoch
in Redis (on SQLite, `b+redis` minus `bastion` is that check alone). Then
revocations on A are watched from B: B's snapshot epoch (`/readyz`, which never catches up by
itself) shows how long pub/sub takes to refresh B ahead of any request, and a call on B right
after A's call returns shows the strict path (must be refused, whatever pub/sub did).

The pair shares a fresh PostgreSQL database when one is reachable (BENCH_POSTGRES_URL), else a
SQLite file; Redis is BENCH_REDIS_URL (default the machine's). Without Redis the section is skipped.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

import anyio
import httpx
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from bench.procs import Child
from bench.report import Phase
from bench.stack import SLUG, Target, provision, smoke, start_bastion
from bench.wire import request_body, request_headers

__all__ = ["NAME", "PG_NAME", "Pair", "epoch_check_cost", "measure_propagation", "replica_pair"]

NAME = "b+redis"  # the load target's row name: Bastion with BASTION_REDIS_URL set
PG_NAME = "b+pg"  # Bastion on a PostgreSQL database of its own, no Redis: the store's share of b+redis
_POLL_DEADLINE = 5.0


@dataclass(frozen=True)
class Pair:
    a: Child
    b: Child
    a_base: str
    b_base: str
    password: str
    database: str  # "postgresql" or "sqlite"
    target: Target  # A's MCP endpoint, for the load phases
    alone: Target | None  # b+pg: the same store kind without Redis (None on SQLite: `bastion` is that row)


def _reachable(url: str, default_port: int) -> bool:
    host_port = url.split("://", 1)[-1].split("@", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host, int(port or default_port)), timeout=1):
            return True
    except OSError:
        return False


async def _admin_sql(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


@contextmanager
def _database(work: Path) -> Iterator[tuple[str, str]]:
    """(URL, kind): a fresh PostgreSQL database dropped afterwards, or a SQLite file in `work`."""
    base = os.environ.get("BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    if not _reachable(base, 5432):
        yield f"sqlite+aiosqlite:///{work / 'replicas.db'}", "sqlite"
        return
    name = f"bastion_bench_{uuid.uuid4().hex[:12]}"
    anyio.run(_admin_sql, base, f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False), "postgresql"
    finally:
        anyio.run(_admin_sql, base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def replica_pair(work: Path, origin_url: str, password: str) -> Iterator[Pair | None]:
    """A (provisioned like the plain Bastion) and B on one store and one Redis namespace; None without Redis."""
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
    if not _reachable(redis_url, 6379):
        print(f"  no Redis at {redis_url}: skipping the replica measurements (set BENCH_REDIS_URL)")
        yield None
        return
    with ExitStack() as stack:
        database_url, kind = stack.enter_context(_database(work))
        env = {
            "BASTION_DATABASE_URL": database_url,
            "BASTION_REDIS_URL": redis_url,
            "BASTION_REDIS_NAMESPACE": f"bastion-bench-{uuid.uuid4().hex[:8]}",
            "BASTION_EPOCH_POLL_SECONDS": "3600",  # only Redis carries changes between the two
        }
        started: list[Child] = []
        # Each its own audit journal directory (one process per directory), as on separate machines.
        a_env = env | {"BASTION_AUDIT_JOURNAL_DIR": str(work / "journal-replica-a")}
        b_env = env | {"BASTION_AUDIT_JOURNAL_DIR": str(work / "journal-replica-b")}
        a, a_base = start_bastion(stack, work, password, started, name="replica-a", extra=a_env)
        token, _ = provision(a_base, password, origin_url)
        b, b_base = start_bastion(stack, work, password, started, name="replica-b", extra=b_env)
        target = Target(NAME, f"{a_base}/servers/{SLUG}/mcp", token, a.pid)
        smoke(target)
        alone = _alone(stack, work, password, origin_url, started) if kind == "postgresql" else None
        yield Pair(a, b, a_base, b_base, password, kind, target, alone)


def _alone(stack: ExitStack, work: Path, password: str, origin_url: str, started: list[Child]) -> Target:
    """`b+pg`: one Bastion on a fresh PostgreSQL database of its own, no Redis, provisioned like the others."""
    database_url, _ = stack.enter_context(_database(work))
    extra = {"BASTION_DATABASE_URL": database_url, "BASTION_AUDIT_JOURNAL_DIR": str(work / "journal-alone-pg")}
    child, base = start_bastion(stack, work, password, started, name="alone-pg", extra=extra)
    token, _ = provision(base, password, origin_url)
    target = Target(PG_NAME, f"{base}/servers/{SLUG}/mcp", token, child.pid)
    smoke(target)
    return target


def _difference(phases: list[Phase], minuend: str, subtrahend: str, level: int) -> tuple[float, float]:
    """(CPU µs per call, p50 ms) of one target's row minus another's at one concurrency."""
    high = next(p for p in phases if p.target == minuend and p.concurrency == level)
    low = next(p for p in phases if p.target == subtrahend and p.concurrency == level)
    return high.us_per_call(high.bastion_cpu_s) - low.us_per_call(low.bastion_cpu_s), high.p50_ms - low.p50_ms


def epoch_check_cost(phases: list[Phase], levels: tuple[int, ...]) -> dict[str, Any]:
    """Per concurrency level, CPU µs per call and p50: the epoch check (`b+redis` minus the row on the same
    store kind: `b+pg`, else `bastion`) and, with `b+pg`, the PostgreSQL store (`b+pg` minus `bastion`)."""
    alone = any(p.target == PG_NAME for p in phases)
    cost: dict[str, Any] = {"epoch_baseline": PG_NAME if alone else "bastion"}
    for level in levels:
        cpu, p50 = _difference(phases, NAME, cost["epoch_baseline"], level)
        cost[f"cpu_us_per_call_c{level}"], cost[f"p50_ms_c{level}"] = cpu, p50
        if alone:
            cpu, p50 = _difference(phases, PG_NAME, "bastion", level)
            cost[f"postgresql_cpu_us_per_call_c{level}"], cost[f"postgresql_p50_ms_c{level}"] = cpu, p50
    return cost


class _EpochWatch:
    """Polls B's `/readyz` on a thread and notes when B's snapshot first reaches an epoch."""

    def __init__(self, base: str, target: int) -> None:
        self._base, self._target = base, target
        self.reached_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="epoch-watch", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        deadline = time.perf_counter() + _POLL_DEADLINE
        with httpx.Client(base_url=self._base, timeout=5, trust_env=False) as http:
            while not self._stop.is_set() and time.perf_counter() < deadline:
                if http.get("/readyz").json().get("epoch", -1) >= self._target:
                    self.reached_at = time.perf_counter()
                    return
                time.sleep(0.001)  # 1 ms resolution; polling flat out would slow the replica it watches

    def join(self) -> float | None:
        self._thread.join(timeout=_POLL_DEADLINE + 1)
        self._stop.set()
        return self.reached_at


def _epoch(http: httpx.Client, base: str) -> int:
    return int(http.get(f"{base}/readyz").json()["epoch"])


def measure_propagation(pair: Pair, trials: int) -> dict[str, Any]:
    """Revoke a fresh token on A, `trials` times; half watch B's epoch, half call B at once."""
    pushed: list[float] = []  # A's call began → B's snapshot at the new epoch, via pub/sub only
    ahead: list[float] = []  # the same, relative to A's call returning (negative: B was first)
    calls: list[float] = []  # A's revoke call, wall time
    strict: list[tuple[int, float]] = []  # (status, latency) of B's first call after A returned
    accepted_at_once = 0
    with httpx.Client(timeout=30, trust_env=False) as http:
        login = http.post(f"{pair.a_base}/api/login", json={"username": "admin", "password": pair.password})
        admin = {"authorization": f"Bearer {login.json()['token']}"}
        for trial in range(trials):
            body = {"name": f"propagation-{trial}", "servers": [SLUG], "expires_in_days": 1}
            created = http.post(f"{pair.a_base}/api/tokens", json=body, headers=admin).json()
            b_url = f"{pair.b_base}/servers/{SLUG}/mcp"
            first = http.post(b_url, content=request_body(1), headers=request_headers(created["token"]))
            accepted_at_once += first.status_code == 200  # B never saw it before: the check made it current
            watch = _EpochWatch(pair.b_base, _epoch(http, pair.a_base) + 1) if trial % 2 else None
            began = time.perf_counter()
            http.post(f"{pair.a_base}/api/tokens/{created['id']}/revoke", headers=admin).raise_for_status()
            returned = time.perf_counter()
            calls.append(returned - began)
            if watch is not None:
                reached = watch.join()
                if reached is not None:
                    pushed.append(reached - began)
                    ahead.append(reached - returned)
            else:
                sent = time.perf_counter()
                answer = http.post(b_url, content=request_body(2), headers=request_headers(created["token"]))
                strict.append((answer.status_code, time.perf_counter() - sent))
    ms = 1e3
    return {
        "trials": trials,
        "database": pair.database,
        "a_revoke_call_ms_p50": median(calls) * ms,
        "pubsub_caught_up_ms_p50": median(pushed) * ms if pushed else None,
        "pubsub_caught_up_ms_max": max(pushed) * ms if pushed else None,
        "pubsub_caught_up_after_a_returned_ms_p50": median(ahead) * ms if ahead else None,
        "pubsub_trials_missed": trials // 2 - len(pushed),
        "new_token_accepted_on_b_at_once": accepted_at_once,
        "first_call_after_refused": sum(status == 401 for status, _ in strict),
        "first_call_after_total": len(strict),
        "first_call_after_latency_ms_p50": median(latency for _, latency in strict) * ms if strict else None,
    }

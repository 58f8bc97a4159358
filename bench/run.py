"""`make bench`: `tools/call` straight to the echo origin vs through Bastion, at two concurrencies.

Every moving part is its own process (origin, Bastion, load generator), all on loopback, so the
CPU each one spends can be measured separately with psutil. Settings come from the environment:
BENCH_SECONDS (measured window per phase, default 8), BENCH_WARMUP (default 1.5),
BENCH_CLIENT (`raw` default, or `httpx`), BENCH_PIPELINE (`on` default: Bastion as it ships; `off`:
the bare proxy, BASTION_PIPELINE=false, for the end-to-end difference). Results: stdout and bench/results/latest.json.
Exit status 1 means the run itself is not trustworthy (errors or no calls), not a missed target.
"""

from __future__ import annotations

import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import orjson

from bench import audit, pipeline
from bench.floor import PARTS
from bench.replicas import NAME, PG_NAME, Pair, epoch_check_cost, measure_propagation, replica_pair
from bench.report import Phase, summarize, table
from bench.rss import RssSampler
from bench.stack import ROOT, Stack, Target, running_stack

__all__ = ["main"]

LEVELS = (1, 32)
NOISE_CORES = 0.15  # other load or hypervisor steal above this makes the comparison unfair
RESULTS = ROOT / "bench" / "results" / "latest.json"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _gateway_pid(target: Target, stack: Stack) -> int:
    """The relay process whose CPU a phase charges: the target's own, or (direct) the idle plain Bastion."""
    return stack.bastion.pid if target.name == "direct" else target.server_pid


def _load(
    target: Target, stack: Stack, concurrency: int, *, seconds: float, warmup: float, client: str
) -> dict[str, Any]:
    """One load-generator process against one target; returns its JSON report."""
    argv = [
        sys.executable, "-m", "bench.load", "--url", target.url, "--concurrency", str(concurrency),
        "--seconds", str(seconds), "--warmup", str(warmup), "--client", client,
        "--watch", str(_gateway_pid(target, stack)), str(stack.origin.pid),
    ]  # fmt: skip
    if target.token is not None:
        argv += ["--token", target.token]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=seconds + warmup + 90, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}):\n{done.stderr.decode(errors='replace')}")
    report: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return report


def _phase(target: Target, concurrency: int, raw: dict[str, Any], stack: Stack, peaks: dict[str, float]) -> Phase:
    cpu = raw["cpu_seconds"]
    return Phase(
        target=target.name,
        concurrency=concurrency,
        seconds=raw["seconds"],
        ok=raw["ok"],
        errors=raw["errors"],
        rps=raw["ok"] / raw["seconds"],
        p50_ms=raw["p50_ms"],
        p99_ms=raw["p99_ms"],
        mean_ms=raw["mean_ms"],
        bastion_cpu_s=cpu[str(_gateway_pid(target, stack))],
        origin_cpu_s=cpu[str(stack.origin.pid)],
        loadgen_cpu_s=raw["loadgen_cpu_seconds"],
        bastion_peak_rss_mb=peaks[target.name if target.name in peaks else "bastion"],
        origin_peak_rss_mb=peaks["origin"],
        machine_busy_s=raw["machine_busy_seconds"],
        machine_steal_s=raw["machine_steal_seconds"],
        error_samples=raw["error_samples"],
    )


def _measure(stack: Stack, pair: Pair | None, *, seconds: float, warmup: float, client: str) -> list[Phase]:
    phases: list[Phase] = []
    pids = {"bastion": stack.bastion.pid, "origin": stack.origin.pid}
    pids |= {relay.name: relay.server_pid for relay in (stack.floor, stack.lean)}
    targets = [stack.direct, stack.floor, stack.lean, stack.gateway]
    if pair is not None:  # the same calls through a Bastion that checks the shared epoch per request
        pids[NAME] = pair.a.pid
        targets.append(pair.target)
        if pair.alone is not None:  # the same store without Redis: splits the row's cost in two
            pids[PG_NAME] = pair.alone.server_pid
            targets.append(pair.alone)
    with RssSampler(pids) as rss:
        for target in targets:
            for concurrency in LEVELS:
                print(f"  {target.name:<8} c={concurrency:<3} {warmup:g}s warm-up + {seconds:g}s ...", flush=True)
                rss.take_peaks_mb()  # forget the previous phase
                raw = _load(target, stack, concurrency, seconds=seconds, warmup=warmup, client=client)
                phases.append(_phase(target, concurrency, raw, stack, rss.take_peaks_mb()))
    return phases


def _environment(seconds: float, warmup: float, client: str) -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "bastion": version("bastion-gateway"),
        "mcp": version("mcp"),
        "seconds": seconds,
        "warmup": warmup,
        "client": client,
        "levels": list(LEVELS),
        "pipeline": os.environ.get("BENCH_PIPELINE", "on"),
    }


def _print_replicas(cost: dict[str, Any] | None, propagation: dict[str, Any] | None) -> None:
    if cost is None or propagation is None:
        return
    if cost["epoch_baseline"] == PG_NAME:
        print(f"PostgreSQL store instead of SQLite ({PG_NAME} minus bastion):")
        for level in LEVELS:
            cpu, p50 = cost[f"postgresql_cpu_us_per_call_c{level}"], cost[f"postgresql_p50_ms_c{level}"]
            print(f"  c={level:<3} CPU {cpu:+.0f} µs/call, p50 {p50:+.2f} ms")
    print(f"per-request epoch check ({NAME} minus {cost['epoch_baseline']}):")
    for level in LEVELS:
        cpu, p50 = cost[f"cpu_us_per_call_c{level}"], cost[f"p50_ms_c{level}"]
        print(f"  c={level:<3} CPU {cpu:+.0f} µs/call, p50 {p50:+.2f} ms")
    p = propagation
    print(f"propagation between two replicas ({p['database']} + Redis, {p['trials']} revocations on A):")
    print(f"  A's revoke call p50 {p['a_revoke_call_ms_p50']:.1f} ms")
    if p["pubsub_caught_up_ms_p50"] is not None:
        print(
            f"  B's snapshot refreshed by pub/sub: p50 {p['pubsub_caught_up_ms_p50']:.1f} ms, "
            f"max {p['pubsub_caught_up_ms_max']:.1f} ms after A's call began "
            f"(p50 {p['pubsub_caught_up_after_a_returned_ms_p50']:+.1f} ms relative to its return; "
            f"{p['pubsub_trials_missed']} not seen within 5 s)"
        )
    print(
        f"  first call on B after A returned: refused {p['first_call_after_refused']}/{p['first_call_after_total']}, "
        f"p50 {p['first_call_after_latency_ms_p50']:.2f} ms; a token new on A accepted by B at once "
        f"{p['new_token_accepted_on_b_at_once']}/{p['trials']}"
    )


def _stop_on_signals() -> None:
    """SIGTERM/SIGINT unwind through the `finally` blocks, so no server or generator outlives the run."""

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)  # also when started with SIGINT ignored (a background job)


def main() -> int:
    _stop_on_signals()
    seconds = _env_float("BENCH_SECONDS", 8.0)
    warmup = _env_float("BENCH_WARMUP", 1.5)
    client = os.environ.get("BENCH_CLIENT", "raw")
    started = time.monotonic()
    stages = "policy pipeline on" if os.environ.get("BENCH_PIPELINE", "on") != "off" else "bare proxy: pipeline off"
    print(f"bench: echo tools/call, direct vs Bastion ({stages}), c={LEVELS}, client={client}, {os.cpu_count()} CPUs")
    trials = int(_env_float("BENCH_PROPAGATION_TRIALS", 20))
    with (
        tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp,
        running_stack(Path(tmp)) as stack,
        replica_pair(Path(tmp), stack.direct.url, secrets.token_urlsafe(24)) as pair,
    ):
        print(f"  origin  pid {stack.origin.pid:<7} {stack.direct.url}")
        print(f"  floor   pid {stack.floor.server_pid:<7} {stack.floor.url} (bench.floor: a bare CPython relay)")
        print(f"  lean    pid {stack.lean.server_pid:<7} {stack.lean.url} (bench.floor --with {','.join(PARTS)})")
        print(f"  bastion pid {stack.bastion.pid:<7} {stack.gateway.url}")
        if pair is not None:
            print(f"  {NAME} pid {pair.a.pid:<7} {pair.target.url} (replica A; B pid {pair.b.pid}, {pair.database})")
            if pair.alone is not None:
                print(f"  {PG_NAME:<7} pid {pair.alone.server_pid:<7} {pair.alone.url} (PostgreSQL, no Redis)")
        print(f"  Bastion speaks {stack.upstream_protocol} to the origin; clients speak 2026-07-28 to both")
        phases = _measure(stack, pair, seconds=seconds, warmup=warmup, client=client)
        upstream_protocol = stack.upstream_protocol
        propagation = measure_propagation(pair, trials) if pair is not None else None
    summary, verdicts = summarize(phases, LEVELS[0], LEVELS[-1])
    print()
    print(table(phases))
    print(
        "  (b = Bastion, on the floor and lean rows that relay; o = echo origin, gen = load generator,"
        " other = rest of the machine, steal = hypervisor; cores = CPU s per wall s)"
    )
    noisy = [f"{p.target} c={p.concurrency}" for p in phases if p.cores(p.noise_cpu_s) > NOISE_CORES]
    if noisy:  # reported, not fatal: the run is still complete, only less comparable
        print(f"  WARNING: other processes + steal > {NOISE_CORES} cores during {', '.join(noisy)}: numbers are noisy")
    print()
    print(f"Bastion added p50 at c={LEVELS[0]}: {summary['added_p50_ms_c_low']:.2f} ms")
    print(f"throughput kept at c={LEVELS[-1]}: {summary['throughput_kept_pct_c_high']:.1f} % of direct")
    print(f"Bastion CPU per call: {summary['bastion_cpu_us_per_call']:.0f} µs")
    print("for scale, the same numbers for the lean relays (bench.floor; not judged):")
    for relay in ("floor", "lean"):
        print(
            f"  {relay:<6} CPU {summary[f'{relay}_cpu_us_per_call_c_low']:.0f} µs/call at c={LEVELS[0]}, "
            f"{summary[f'{relay}_cpu_us_per_call_c_high']:.0f} at c={LEVELS[-1]}; added p50 at c={LEVELS[0]} "
            f"{summary[f'{relay}_added_p50_ms_c_low']:.2f} ms; kept at c={LEVELS[-1]} "
            f"{summary[f'{relay}_kept_pct_c_high']:.1f} %"
        )
    print("targets:")
    for verdict in verdicts:
        print(verdict.line())
    epoch_cost = epoch_check_cost(phases, LEVELS) if propagation is not None else None
    _print_replicas(epoch_cost, propagation)
    audit_cost = audit.measure()  # after the stack stopped: nothing else runs
    audit.report(audit_cost)
    pipeline_cost = pipeline.measure()
    pipeline.report(pipeline_cost)
    errors = sum(p.errors for p in phases)
    untrustworthy = errors > 0 or any(p.ok == 0 for p in phases)
    for p in phases:
        for sample in p.error_samples:
            print(f"  error sample ({p.target} c={p.concurrency}): {sample}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "generated_at": datetime.now(UTC).isoformat(),
        "environment": _environment(seconds, warmup, client) | {"upstream_protocol": upstream_protocol},
        "phases": [p.as_json() for p in phases],
        "summary": summary,
        "targets": [{"name": v.name, "value": v.value, "unit": v.unit, "target": v.target, "pass": v.passed}
                    for v in verdicts],
        "errors": errors,
        "epoch_check_cost": epoch_cost,
        "propagation": propagation,
        "audit": audit_cost,
        "pipeline": pipeline_cost,
        "noisy_phases": noisy,
        "wall_seconds": time.monotonic() - started,
    }  # fmt: skip
    RESULTS.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    print(f"results: {RESULTS.relative_to(ROOT)}  ({time.monotonic() - started:.0f} s)")
    if untrustworthy:
        print(f"bench: {errors} errors: the numbers above are not trustworthy", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as stopped:  # the servers were already stopped on the way out
        print(f"bench: stopped ({stopped})", file=sys.stderr)
        sys.exit(130)

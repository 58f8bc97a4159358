"""`python -m bench.compare <src-dir>`: two builds of Bastion measured under the same load at once.

Why: CPU time on this machine moves by a factor of two from hour to hour, and by ±20 % from one
run to the next in the same minute, which hides changes of a few percent in `make bench`.
`bench.instructions` counts user space only; a change in system calls, threads or waiting
(where an `fdatasync` runs, how often the store is written) needs CPU time. Here both builds
run side by side behind one echo origin, and each round loads both at the same time with the
same concurrency, so whatever the machine does in that window it does to both: the ratio of
their CPU per call is what is compared. Two copies of one build measured 0.98-1.03 this way.

Build A runs from `<src-dir>` (for example a `git worktree add /tmp/old <commit>` checkout's
`src`), build B from this checkout. Knobs: BENCH_ROUNDS (default 4), BENCH_SECONDS (measured
window per round, default 4), BENCH_LEVELS (concurrencies, default "1,32"). Prints each round
and, per concurrency, the median CPU µs per call of each build and of B/A. Not part of
`make bench` nor of the test suite: two gateways and two load generators share the cores, so
the absolute numbers are not `make bench`'s.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.procs import Child
from bench.stack import ROOT, SLUG, provision, start_bastion, start_origin

__all__ = ["main"]


@dataclass(frozen=True, slots=True)
class _Build:
    name: str
    child: Child
    url: str
    token: str


def _start(
    stack: ExitStack, work: Path, name: str, origin_url: str, env: dict[str, str], started: list[Child]
) -> _Build:
    own = work / name
    own.mkdir()
    password = secrets.token_urlsafe(24)
    child, base = start_bastion(stack, own, password, started, name=name, extra=env)
    token, _ = provision(base, password, origin_url)
    return _Build(name, child, f"{base}/servers/{SLUG}/mcp", token)


def _load(build: _Build, concurrency: int, seconds: str) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable, "-m", "bench.load", "--url", build.url, "--token", build.token,
        "--concurrency", str(concurrency), "--seconds", seconds, "--warmup", "1", "--watch", str(build.child.pid),
    ]  # fmt: skip
    return subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE)


def _cpu_per_call(build: _Build, process: subprocess.Popen[bytes]) -> tuple[float, dict[str, Any]]:
    out, _ = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"the load generator for {build.name} failed ({process.returncode})")
    result: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    if not result["ok"] or result["errors"]:
        raise SystemExit(f"{build.name}: {result['errors']} errors, {result['ok']} calls: {result['error_samples']}")
    return result["cpu_seconds"][str(build.child.pid)] / result["ok"] * 1e6, result


def main() -> None:
    if len(sys.argv) != 2 or not Path(sys.argv[1], "bastion").is_dir():
        raise SystemExit("usage: python -m bench.compare <src dir of build A, holding bastion/>")
    a_src = str(Path(sys.argv[1]).resolve())
    rounds = int(os.environ.get("BENCH_ROUNDS", "4"))
    seconds = os.environ.get("BENCH_SECONDS", "4")
    levels = [int(level) for level in os.environ.get("BENCH_LEVELS", "1,32").split(",")]
    cpu: dict[tuple[str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bastion-compare-") as tmp, ExitStack() as stack:
        started: list[Child] = []
        work = Path(tmp)
        _origin, origin_url = start_origin(stack, work, started)
        builds = [
            _start(stack, work, "A", origin_url, {"PYTHONPATH": a_src}, started),
            _start(stack, work, "B", origin_url, {}, started),
        ]
        print(f"A: {a_src}\nB: {ROOT / 'src'}")
        for round_ in range(rounds):
            for level in levels:
                loads = [(build, _load(build, level, seconds)) for build in builds]
                line = []
                for build, process in loads:
                    per_call, result = _cpu_per_call(build, process)
                    cpu.setdefault((build.name, level), []).append(per_call)
                    latency = f"p50 {result['p50_ms']:6.2f} p99 {result['p99_ms']:7.2f} ms"
                    line.append(f"{build.name} {per_call:6.0f} µs/call  {latency}")
                print(f"round {round_ + 1} c={level:<3} " + "   ".join(line), flush=True)
    for level in levels:
        a, b = cpu[("A", level)], cpu[("B", level)]
        ratios = ", ".join(f"{y / x:.3f}" for x, y in zip(a, b, strict=True))
        print(
            f"c={level}: A {statistics.median(a):.0f}  B {statistics.median(b):.0f} µs/call (medians);"
            f"  B/A per round: {ratios}"
        )


if __name__ == "__main__":
    main()

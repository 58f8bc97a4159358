"""`python -m bench.ladder`: the lean relay (`bench.floor`) with a gateway's per-call parts added one at a time.

Why: `make bench` shows the bare relay and the relay with every part; this says what each part
costs on its own, measured the same way (the load generator's CPU accounting of the relay's
process, behind the SDK echo origin). Each rung is its own relay process, run in turn; the last two
serve the relay as an ASGI app under uvicorn, as `bastion serve` does, for the ASGI server's share. Knobs:
BENCH_SECONDS (default 5 per phase), BENCH_LEVELS (default "1,32"). Not part of `make bench`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson

from bench.floor import PARTS
from bench.procs import Child
from bench.stack import ROOT, Target, smoke, start_floor, start_origin

__all__ = ["RUNGS", "main"]

# (parts, under uvicorn): each part alone on top of validation, then all, then the ASGI server's share.
RUNGS = (
    ("", False),
    ("validate", False),
    ("validate,uses", False),
    ("validate,audit", False),
    (",".join(PARTS), False),
    ("", True),
    (",".join(PARTS), True),
)


def _load(target: Target, origin: Child, concurrency: int, seconds: float) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "bench.load", "--url", target.url, "--concurrency", str(concurrency),
        "--seconds", str(seconds), "--warmup", "1", "--watch", str(target.server_pid), str(origin.pid),
    ]  # fmt: skip
    if target.token is not None:
        argv += ["--token", target.token]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, timeout=seconds + 90, check=True)
    report: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    return report


def main() -> None:
    seconds = float(os.environ.get("BENCH_SECONDS") or 5)
    levels = [int(level) for level in os.environ.get("BENCH_LEVELS", "1,32").split(",")]
    print(f"{'parts':<32} {'c':>3} {'req/s':>7} {'p50 ms':>7} {'relay CPU µs/call':>18} {'origin':>7}")
    with tempfile.TemporaryDirectory(prefix="bastion-ladder-") as tmp, ExitStack() as stack:
        work, started = Path(tmp), list[Child]()
        origin, origin_url = start_origin(stack, work, started)
        for index, (parts, asgi) in enumerate(RUNGS):
            with ExitStack() as rung:
                target = start_floor(rung, work, started, origin_url, name=f"rung{index}", parts=parts, asgi=asgi)
                label = (parts or "bare") + (" (uvicorn)" if asgi else "")
                smoke(target)
                for level in levels:
                    raw = _load(target, origin, level, seconds)
                    calls = raw["ok"] + raw["errors"]
                    relay, upstream = (raw["cpu_seconds"][str(pid)] for pid in (target.server_pid, origin.pid))
                    print(
                        f"{label:<32} {level:>3} {raw['ok'] / raw['seconds']:>7.0f} {raw['p50_ms']:>7.2f} "
                        f"{relay / calls * 1e6:>18.0f} {upstream / calls * 1e6:>7.0f}"
                        + (f"  ({raw['errors']} errors)" if raw["errors"] else ""),
                        flush=True,
                    )


if __name__ == "__main__":
    main()

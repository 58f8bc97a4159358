"""`python -m bench.profile`: the bench stack under load through Bastion, with py-spy recording Bastion.

Why: `make bench` says how much Bastion costs; this says where. py-spy is not a project dependency
(`.venv/bin/pip install py-spy`). Writes bench/results/profile-c<N>.svg (flame graph) and .txt (collapsed
stacks, for grep). Knobs: BENCH_CONCURRENCY (default 32), BENCH_SECONDS (default 8), BENCH_CLIENT,
BENCH_PROFILE_RATE (samples per second, default 100), BENCH_PROFILE_GIL=1 (only samples that hold the GIL:
Python's own CPU, without threads waiting in system calls).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.stack import ROOT, running_stack

__all__ = ["main"]

RESULTS = ROOT / "bench" / "results"


def _py_spy() -> str:
    found = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    return found


def _record(py_spy: str, pid: int, seconds: float, out: Path, fmt: str) -> None:
    # Blocking sampling (the default) gives complete stacks; 100 Hz keeps the pauses small.
    rate = os.environ.get("BENCH_PROFILE_RATE", "100")
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", rate]
    if os.environ.get("BENCH_PROFILE_GIL") == "1":
        argv.append("--gil")
    subprocess.run([*argv, "--format", fmt, "-o", str(out)], check=True, capture_output=True)


def main() -> None:
    py_spy = _py_spy()
    concurrency = int(os.environ.get("BENCH_CONCURRENCY", "32"))
    seconds = float(os.environ.get("BENCH_SECONDS", "8"))
    client = os.environ.get("BENCH_CLIENT", "raw")
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = RESULTS / f"profile-c{concurrency}"
    with tempfile.TemporaryDirectory(prefix="bastion-profile-") as tmp, running_stack(Path(tmp)) as stack:
        target = stack.gateway
        assert target.token is not None
        argv = [
            sys.executable, "-m", "bench.load", "--url", target.url, "--token", target.token,
            "--concurrency", str(concurrency), "--seconds", str(2 * seconds + 4), "--warmup", "1",
            "--client", client,
        ]  # fmt: skip
        load = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL)
        try:
            time.sleep(1.5)
            _record(py_spy, stack.bastion.pid, seconds, base.with_suffix(".svg"), "flamegraph")
            _record(py_spy, stack.bastion.pid, seconds, base.with_suffix(".txt"), "raw")
        finally:
            load.terminate()
            load.wait(timeout=30)
    print(f"wrote {base.with_suffix('.svg')} and {base.with_suffix('.txt')}")


if __name__ == "__main__":
    main()

"""`python -m bench.instructions`: instructions Bastion executes per `tools/call`, counted by callgrind.

Why: CPU time on this machine moves by a factor of two from hour to hour (the echo origin alone
took 416 µs per call in one hour and 1,300 in another), which hides any change smaller than that
in `make bench`. Valgrind's callgrind counts the instructions a process executes in user space,
the same count for the same work however fast the machine runs. Not quite the same count: the
journal's and the writers' background rounds are timed (every 0.25-2 s), so a run slowed by
other load counts more of them per call (two runs of one build differed by 1-3 % on a quiet
machine, up to 8 % with the test suite running beside them). What it does not count: time in the
kernel (system calls, `fdatasync`) and waiting. So it compares builds of Bastion's own code, on a
quiet machine; `make bench` remains what the targets are judged on.

Bastion runs `bastion serve` under `valgrind --tool=callgrind` with counting off; after a warm-up,
counting is on for exactly BENCH_CALLS calls (default 200) sent one at a time, then with 8 in
flight, then off (`callgrind_control`). Prints instructions per call for both. About a minute.
Not part of `make bench` (valgrind slows Bastion about fifty times) nor of the test suite.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import httpx

from bastion.config import Settings
from bench.procs import Child, wait_until
from bench.stack import SLUG, provision, start_bastion, start_origin
from bench.wire import check_reply, request_body, request_headers

__all__ = ["main", "measure"]

LEVELS = (1, 8)
_WARMUP_CALLS = 60
# The longest of the background writers' rounds (the audit store's, the token use log's), by default
# (0.5 s for a build older than those settings).
_ROUNDS = max(
    (float(field.default) for name in ("audit_store_seconds", "token_use_flush_seconds")
     if (field := Settings.model_fields.get(name)) is not None),
    default=0.5,
)  # fmt: skip


def _control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True)


def _instructions(dumps: list[Path]) -> int:
    """The counted instructions in callgrind's dumps (`summary:` or `totals:` lines)."""
    total = 0
    for dump in dumps:
        lines = dump.read_text(errors="replace").splitlines()
        total += max((int(line.split()[1]) for line in lines if line.startswith(("summary:", "totals:"))), default=0)
    return total


def _new_dumps(work: Path, before: set[Path]) -> list[Path]:
    return sorted(set(work.glob("callgrind.out*")) - before)


def _dumped(work: Path, before: set[Path]) -> bool:
    return bool(_new_dumps(work, before))


async def _calls(url: str, token: str, count: int, in_flight: int) -> None:
    headers = request_headers(token)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(timeout=120, limits=limits, trust_env=False) as client:

        async def one(request_id: int) -> None:
            response = await client.post(url, content=request_body(request_id), headers=headers)
            problem = check_reply(response.status_code, response.content, request_id)
            if problem is not None:
                raise RuntimeError(f"call {request_id} failed: {problem}")

        for start in range(0, count, in_flight):
            await asyncio.gather(*(one(start + n + 1) for n in range(min(in_flight, count - start))))


def measure(calls: int) -> dict[int, float]:
    """Instructions per call at each level of LEVELS."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("valgrind not found (Debian: apt-get install valgrind)")
    password = secrets.token_urlsafe(24)
    results: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="bastion-instructions-") as tmp, ExitStack() as stack:
        work, started = Path(tmp), list[Child]()
        _, origin_url = start_origin(stack, work, started)
        out = work / "callgrind.out"
        wrapper = ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}")
        bastion, base = start_bastion(stack, work, password, started, wrapper=wrapper, start_timeout=600)
        token, _ = provision(base, password, origin_url)
        url = f"{base}/servers/{SLUG}/mcp"
        pid = str(bastion.pid)
        for level in LEVELS:
            asyncio.run(_calls(url, token, _WARMUP_CALLS, level))
            before = set(work.glob("callgrind.out*"))
            _control("--zero", pid)
            _control("--instr=on", pid)
            asyncio.run(_calls(url, token, calls, level))
            time.sleep(_ROUNDS + 0.1)  # the journal's and the writers' rounds of these calls fall inside
            _control("--instr=off", pid)
            _control("--dump", pid)
            wait_until(partial(_dumped, work, before), what="callgrind's dump", timeout=30, alive=bastion.alive)
            time.sleep(0.5)  # a dump may come in parts: let them all land
            dumps = _new_dumps(work, before)
            results[level] = _instructions(dumps) / calls
            for dump in dumps:
                dump.unlink()
    return results


def main() -> None:
    calls = int(os.environ.get("BENCH_CALLS", "200"))
    results = measure(calls)
    for level, per_call in results.items():
        print(f"in flight {level}: {per_call / 1e6:.3f} M instructions per tools/call ({calls} calls)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Process plumbing: free ports, readiness waits, and children that are always reaped.

Kept apart from the benchmark logic so `run` reads as the experiment, not as subprocess code.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["Child", "free_port", "wait_until"]


def free_port() -> int:
    """A port the kernel just handed out on loopback (racy in theory, fine on a quiet box)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(ready: Callable[[], bool], *, what: str, timeout: float, alive: Callable[[], bool]) -> None:
    """Poll `ready` until it is true; fail early if the child died, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what} exited during start-up")
        if ready():
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} was not ready after {timeout:g}s")


class Child:
    """One server process with its output in a log file (pipes could fill up and stall it)."""

    def __init__(self, name: str, argv: list[str], *, log_dir: Path, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=cwd)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (uvicorn shuts down gracefully), then SIGKILL if it lingers."""
        try:
            if self.alive():
                self.process.terminate()
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=timeout)
        finally:
            self._log.close()

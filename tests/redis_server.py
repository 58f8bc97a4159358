"""Redis for tests: the machine's shared server, or a private one a test may stop and restart.

A test that breaks Redis never touches the shared server: it starts its own `redis-server`
on a free loopback port (nothing kept on disk) and kills it, then starts it again on the same
port, as an operator's restart would.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.conftest import require_service
from tests.harness import free_port, wait_for_port

__all__ = ["RedisServer", "namespace", "private_redis", "shared_redis_url"]

_HINT = "set BASTION_TEST_REDIS_URL, or install redis-server"


def shared_redis_url() -> str:
    """The machine's Redis (skipped without it; a failure under CI)."""
    url = os.environ.get("BASTION_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    host_port = url.split("://", 1)[-1].split("@", 1)[-1].split("/", 1)[0]
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host, int(port or 6379)), timeout=1):
            return url
    except OSError:
        return require_service("Redis", None, hint=_HINT)


def namespace() -> str:
    """A key prefix of the test's own: tests share the machine's Redis, never each other's keys."""
    return f"bastion-test-{uuid.uuid4().hex[:12]}"


class RedisServer:
    """One private `redis-server` process on a fixed loopback port."""

    def __init__(self, binary: str) -> None:
        self._binary = binary
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            [self._binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port)

    def pause(self) -> None:
        """SIGSTOP: connections stay open and nothing answers, as with a hung server or a partition."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """Stop it the hard way (SIGKILL): no goodbye to connected clients, as in a crash."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


@contextmanager
def private_redis() -> Iterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        require_service("redis-server", None, hint=_HINT)
        pytest.fail("unreachable")  # require_service skipped or failed already
    server = RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        server.kill()

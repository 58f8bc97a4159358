"""stdio origins: a managed child process speaking newline-delimited JSON-RPC.

The process starts on first use, only if its command is on the stdio allowlist
(checked at every start, see `commands.py`), with a minimal environment and under
resource limits, in a session (and process group) of its own. It is read by one task,
and when it dies every waiting call fails at once with a clear error, and whatever it
started goes with it (the whole group is killed); the next call restarts it after an
exponential backoff (so a crash loop, or a process that fails its handshake every
time, cannot spin the CPU).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any

import anyio
import orjson
import structlog
from anyio.abc import Process, TaskGroup
from anyio.streams.buffered import BufferedByteReceiveStream

from bastion.catalog.snapshot import OriginSpec
from bastion.errors import UpstreamError, UpstreamUnavailable
from bastion.mcp.upstream.base import NotificationSink, OnBehalf, OriginGuard
from bastion.mcp.upstream.rpc import RpcCore, decode_message

__all__ = ["StdioOriginClient"]

log = structlog.get_logger(__name__)

_ENV_KEEP = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
_STABLE_AFTER_SECONDS = 30.0
_MAX_BACKOFF_SECONDS = 10.0
_STDERR_LINE = 65536  # a longer line of the origin's log is cut there, and reading goes on
_TERM = int(signal.SIGTERM)
_KILL = int(getattr(signal, "SIGKILL", signal.SIGTERM))  # Windows has no SIGKILL


class StdioOriginClient(RpcCore):
    def __init__(
        self,
        spec: OriginSpec,
        *,
        timeout: float,
        max_bytes: int,
        notify: NotificationSink,
        task_group: TaskGroup,
        guard: OriginGuard,
    ) -> None:
        super().__init__(spec, timeout=timeout, max_bytes=max_bytes, notify=notify)
        assert spec.command
        self._command = list(spec.command)
        self._policy = guard.stdio
        self._tasks = task_group
        self._process: Process | None = None
        self._write_lock = anyio.Lock()
        self._failures = 0
        self._started_at = 0.0

    async def _connect(self) -> None:
        if self._failures:
            await anyio.sleep(min(0.1 * 2 ** (self._failures - 1), _MAX_BACKOFF_SECONDS))
        try:
            argv = self._policy.launch_argv(self.spec.name, self._command)
        except UpstreamUnavailable:
            self._failures += 1
            raise
        credential = self.spec.credential
        if credential is not None and credential.error is not None:
            self._failures += 1
            raise UpstreamUnavailable(f"origin {self.spec.name!r}: {credential.error}")
        env = {key: os.environ[key] for key in _ENV_KEEP if key in os.environ}
        if credential is not None:
            env.update(credential.env)  # its sealed variables: never on the command line, where `ps` shows them
        try:
            # A session of its own: its process group holds whatever it starts (`npx` starts `node`),
            # so stopping it stops them too (`_signal`).
            process = await anyio.open_process(
                argv,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            self._failures += 1
            raise UpstreamUnavailable(
                f"origin {self.spec.name!r}: cannot start {self._command[0]!r} ({exc.strerror})"
            ) from exc
        self._process, self._started_at, self._close_reason = process, time.monotonic(), "closed the connection"
        self._tasks.start_soon(self._read_stdout, process)
        self._tasks.start_soon(self._drain_stderr, process)

    async def _disconnect(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with anyio.CancelScope(shield=True):
            if process.returncode is None:
                _signal(process, _TERM)
                with anyio.move_on_after(2):
                    await process.wait()
            _signal(process, _KILL)  # what it started, and it if it did not stop
            await process.aclose()  # reaps it and closes its pipes

    async def _abandon(self, *, failed: bool) -> None:
        # Still running and it failed the handshake: that counts as a crash (a caller giving up
        # during a slow start does not).
        if failed and self._process is not None:
            self._failures += 1
        await self._disconnect()

    async def _send_request(self, message: dict[str, Any]) -> None:
        await self._send_message(message)

    async def _subscribe(self) -> None:
        # Its notifications arrive on stdout like everything else; no reply is awaited.
        await self._send_message(self.listen_request())

    async def _send_message(self, message: dict[str, Any], *, on_behalf: OnBehalf | None = None) -> None:
        # One process, one credential (its sealed environment): whom a message concerns changes nothing.
        process = self._process
        if process is None or process.stdin is None:
            raise UpstreamUnavailable(f"origin {self.spec.name!r}: the process is not running")
        try:
            async with self._write_lock:
                await process.stdin.send(orjson.dumps(message) + b"\n")
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise UpstreamUnavailable(f"origin {self.spec.name!r}: the process stopped reading") from exc

    async def _read_stdout(self, process: Process) -> None:
        assert process.stdout is not None
        reader = BufferedByteReceiveStream(process.stdout)
        reason = "stdio process exited"
        try:
            while True:
                line = await reader.receive_until(b"\n", self.max_bytes)
                if line.strip():
                    await self._route(decode_message(line, self.spec.name))
        except anyio.DelimiterNotFound:
            reason = f"stdio process sent a message over {self.max_bytes} bytes"
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        except UpstreamError as exc:  # a malformed message, or an answer the process would not take
            reason = exc.message
        except Exception as exc:  # the top of a background task: the process is handled as dead, no more
            reason = f"stdio reader failed: {type(exc).__name__}"
            log.warning("origin_reader_failed", origin=self.spec.name, error=type(exc).__name__)
        if self._process is process:
            await self._on_death(process, reason)

    async def _on_death(self, process: Process, reason: str) -> None:
        self._process = None
        lived = time.monotonic() - self._started_at
        self._failures = 0 if lived > _STABLE_AFTER_SECONDS else self._failures + 1
        with anyio.CancelScope(shield=True):
            _signal(process, _KILL)  # it, if it still runs, and whatever it started
            await process.aclose()  # reaps it and closes its pipes: a survivor reading stdin sees the end
        log.warning("origin_process_died", origin=self.spec.name, returncode=process.returncode, reason=reason)
        self._fail_all(f"{reason} (exit code {process.returncode})")

    async def _drain_stderr(self, process: Process) -> None:
        """The origin's own log lines, logged cut short so a chatty origin cannot flood ours. Read
        as long as the process lives, whatever it writes: an origin whose stderr is not read blocks
        on its next write once the pipe is full, and its calls with it (a line with no end is cut at
        `_STDERR_LINE`; stopping there wedged the origin for good)."""
        assert process.stderr is not None
        pending = b""
        try:
            async for chunk in process.stderr:
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                if len(pending) > _STDERR_LINE:
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    log.debug("origin_stderr", origin=self.spec.name, line=line[:500].decode("utf-8", "replace"))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return


def _signal(process: Process, number: int) -> None:
    """Signal the process's group (it leads one: see `_connect`); nothing if it is gone. Where
    there are no process groups (Windows), the process alone."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(process.pid, number)
        elif process.returncode is None:
            process.kill() if number == _KILL else process.terminate()
    except (ProcessLookupError, PermissionError):
        pass

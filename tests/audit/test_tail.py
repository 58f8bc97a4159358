"""`bastion audit tail`, run as a real process against SQLite and PostgreSQL: records appended after it
started come out as JSON lines, filtered as asked, and Ctrl-C ends it cleanly."""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import anyio
import orjson
import pytest

from bastion.store.db import Database
from bastion.store.repos.audit import AuditLog
from tests.audit.chains import BASTION, Keys, audit_log, cli_env, record, write

pytestmark = pytest.mark.anyio

STARTUP = 30.0  # a Python process importing the CLI on a busy machine
ARRIVAL = 10.0  # a record's way from the store to the tail's output (polls every 0.1 s here)


@dataclass
class Tail:
    process: subprocess.Popen[str]
    lines: queue.Queue[str]
    errors: list[str]

    async def next_records(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + ARRIVAL
        found = []
        for _ in range(count):
            line = await anyio.to_thread.run_sync(lambda: self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
            found.append(orjson.loads(line))
        return found

    async def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)  # Ctrl-C
        return await anyio.to_thread.run_sync(lambda: self.process.wait(timeout=ARRIVAL))


def _pump(stream: IO[str], into: queue.Queue[str] | list[str], ready: threading.Event | None = None) -> None:
    for line in stream:
        if isinstance(into, list):
            into.append(line)
            if ready is not None and "following the audit trail" in line:
                ready.set()
        else:
            into.put(line)


@contextmanager
def tailing(database_url: str, *args: str) -> Iterator[Tail]:
    """`bastion audit tail ARGS`, once it says it follows (records appended from then on come)."""
    process = subprocess.Popen(
        [BASTION, "audit", "tail", "--poll", "0.1", *args],
        env=cli_env(database_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    tail, ready = Tail(process, queue.Queue(), []), threading.Event()
    pumps = [
        threading.Thread(target=_pump, args=(process.stdout, tail.lines), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, tail.errors, ready), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        assert ready.wait(STARTUP) or process.poll() is not None, "the tail did not start"
        assert process.poll() is None, "".join(tail.errors)
        yield tail
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=ARRIVAL)
        for pump in pumps:  # they end at the pipes' end of file
            pump.join(timeout=ARRIVAL)
        process.stdout.close()
        process.stderr.close()


async def test_tail_prints_the_last_records_then_each_new_one_as_a_json_line_until_ctrl_c(
    store: Database, tmp_path: Path, keys: Keys, tenant: str
) -> None:
    log = audit_log(store, tmp_path, keys, every=1000)
    await write(log, tenant, [record(n) for n in range(1, 4)])
    with tailing(store.url, "--tenant", tenant, "-n", "2") as tail:
        assert [line["seq"] for line in await tail.next_records(2)] == [2, 3]
        await write(log, tenant, [record(4)])
        await write(log, tenant, [record(5), record(6)])
        new = await tail.next_records(3)
        assert [(line["seq"], line["correlation_id"], line["tenant_id"]) for line in new] == [
            (4, "c4", tenant),
            (5, "c5", tenant),
            (6, "c6", tenant),
        ]
        assert new[0]["prev_hash"] != new[0]["hash"] == new[1]["prev_hash"]  # the chain's own links
        assert new[2]["detail"] == {"n": 6} and new[2]["kind"] == "mcp.request"
        assert await tail.interrupt() == 0
    assert tail.lines.empty() and not any("Traceback" in line for line in tail.errors), tail.errors


async def test_tail_shows_only_records_of_the_kind_and_correlation_id_asked_for(
    store: Database, tmp_path: Path, tenant: str
) -> None:
    log = AuditLog(store, tmp_path / "journal")
    await write(log, tenant, [record(1, kind="decision", correlation_id="wanted"), record(2, kind="decision")])
    filters = ("--tenant", tenant, "--kind", "decision", "--correlation-id", "wanted", "--since-seq", "1")
    with tailing(store.url, *filters) as tail:
        assert [line["seq"] for line in await tail.next_records(1)] == [1]  # from --since-seq on
        await write(
            log,
            tenant,
            [
                record(3, kind="mcp.request", correlation_id="wanted"),
                record(4, kind="decision", correlation_id="other"),
                record(5, kind="decision", correlation_id="wanted"),
                record(6, kind="upstream.call", correlation_id="wanted"),
            ],
        )
        await write(log, tenant, [record(7, kind="decision", correlation_id="wanted")])
        # Each chain is read in order: once record 7 is out, every record before it was judged.
        assert [line["seq"] for line in await tail.next_records(2)] == [5, 7]
        assert tail.lines.empty()
        assert await tail.interrupt() == 0

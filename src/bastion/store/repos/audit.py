"""The audit trail in the store: appended in batches to each tenant's hash chain, verified by walking it.

`AuditLog.record` queues a record and returns a `Durable` the caller may await. Two stages:

1. The journal: the first caller that waits writes everything queued to a local journal file
   with one `fdatasync` (group commit: every caller waiting at that moment shares it), then its
   waiters wake; what nobody waits for is journaled within `interval` seconds. A call
   acknowledged to a client has its record on disk, whatever happens next; a journal that
   cannot be written refuses the call (AuditUnavailable) instead.
2. The store: every `store_interval` seconds, what was journaled is appended to the tenants'
   chains in large batches, and its journal files are deleted. With the store unreachable, records
   stay journaled and are tried again; a process killed meanwhile leaves its journal files,
   which the next start writes to the store first, in order, skipping what had arrived. A long
   outage does not grow memory without end: past `max_unstored` records, the log lets go of its
   copies, and stores them from its files once the store is back, before anything newer (`_spill`).

So a call costs a share of one small fdatasync, not a database transaction.

Appending locks the tenant's chain head (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite has one
writer), so replicas sharing a database extend one chain without forks. In the same transaction,
with the lock held, the checkpoints that are due are signed (`audit_checkpoints`); `verify_chain`
checks each one, and starts from the signed anchor a prune left (`audit_retention`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio
import orjson
import structlog
from sqlalchemy import String, Table, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from bastion.audit.chain import GENESIS, AuditRecord, canonical, chain_hash
from bastion.audit.checkpoints import CheckpointPolicy
from bastion.audit.sink import now_us
from bastion.config import Settings
from bastion.errors import AuditUnavailable
from bastion.oauth.keys import KeyRing
from bastion.storable import storable_json
from bastion.store.db import Database
from bastion.store.models import AuditEntry, AuditHead
from bastion.store.repos import audit_directory as journal_directory
from bastion.store.repos.audit_checkpoints import Checkpointer
from bastion.store.repos.audit_journal import JournalFile, journal_lines
from bastion.store.repos.audit_verify import PRUNE_KIND, ChainReport, entry_record, verify_chain, verify_report
from bastion.store.tenancy import SYSTEM

# One default, the setting's (BASTION_AUDIT_STORE_SECONDS): tests and benches that build a log
# without settings get what a deployment gets.
_STORE_SECONDS: float = Settings.model_fields["audit_store_seconds"].default

__all__ = [
    "PRUNE_KIND",
    "AuditLog",
    "ChainReport",
    "Durable",
    "entry_record",
    "extend_chain",
    "lock_head",
    "verify_chain",
    "verify_report",
]

log = structlog.get_logger(__name__)

_ENTRIES = cast(Table, AuditEntry.__table__)
# Journal syncs average (seconds) above which they run in a worker thread; the average's weight of
# the newest sync (about the last ten count).
_INLINE_SYNC_LIMIT = 0.001
_SYNC_WEIGHT = 0.1
_ADOPT_SECONDS = 60.0  # how often a running log looks for CLI commands' directories left behind


class Durable:
    """Done once its record is journaled on local disk (fdatasync'ed). Whoever waits on it writes
    the journal, unless a sync already under way takes it (see `AuditLog._journal_for`)."""

    __slots__ = ("_log", "done")

    def __init__(self, log: AuditLog) -> None:
        self._log = log
        self.done = False

    async def wait(self) -> None:
        if not self.done:
            await self._log._journal_for(self)


@dataclass(slots=True)
class _Queued:
    tenant_id: str
    record: AuditRecord
    durable: Durable


class AuditLog:
    def __init__(
        self,
        db: Database,
        journal_dir: Path,
        *,
        batch_size: int = 2000,
        max_queue: int = 100_000,
        max_unstored: int = 20_000,
        interval: float = 0.25,
        store_interval: float = _STORE_SECONDS,
        signer: Callable[[], KeyRing] | None = None,
        checkpoints: CheckpointPolicy | None = None,
        clock: Callable[[], int] = now_us,
        journal_file: Callable[[Path], JournalFile] = JournalFile,
        adopt_seconds: float = _ADOPT_SECONDS,
    ) -> None:
        """`signer`: the live key ring, whose active key signs checkpoints (None: none are made).

        `store_interval`: a store round costs about 5 ms of CPU whatever its size (SQLite, one
        record: 2.8 ms user, 2.5 ms system; a dozen round trips to the database's thread and a
        synced commit), and 40-50 µs more per record. Every 0.25 s, at c=1 (about 290 calls/s
        here), that fixed part was some 70 µs per call; every second it is under 20."""
        self._db = db
        self.checkpointer = (
            None
            if signer is None
            else Checkpointer(signer, lambda: db.vault, checkpoints or CheckpointPolicy(), clock=clock)
        )
        self._clock = clock
        self._dir = journal_dir
        self._interval = interval
        self._store_interval = store_interval
        self._batch_size = batch_size
        self._max_queue = max_queue
        self._max_unstored = max_unstored
        # Journal files let go of by `_spill`, oldest first, and about how many records they hold
        # that the store lacks (a file's records are taken off as it is stored).
        self._spilled: list[Path] = []
        self._spilled_records = 0
        self._queue: deque[_Queued] = deque()  # not yet durable
        self._journaled: list[tuple[str, AuditRecord]] = []  # durable on disk, not yet in the store
        self._files: list[Path] = []  # journal files holding `_journaled`, oldest first
        self._current: JournalFile | None = None
        # A waiter leads a sync: set when it ends. asyncio's Event (and sleep(0) below), not anyio's:
        # anyio's look up the running backend each time, on a path every forwarded call takes.
        self._syncing: asyncio.Event | None = None
        self._sync_seconds = 0.0  # a moving average of the journal's syncs (see `_journal`)
        self._journal_file = journal_file
        self._store_lock = anyio.Lock()
        self._journal_lock = asyncio.Lock()  # taken on every sync: see `_journal`
        self._sequence = 0
        self._recovered = False  # a previous process's journal files are in the store
        self._quiet_check_at: int | None = None  # when to look for chains left unsigned (see `_pin_quiet_chains`)
        self._held: int | None = None  # the journal directory's lock (see `hold_directory`)
        self._adopted = False  # the lock is the process's, not this log's (see `adopt_directory`)
        self._adopt_seconds = adopt_seconds
        self._adopt_at = 0.0  # when to look again for CLI commands' directories left behind (see `recover`)

    def record(self, tenant_id: str, record: AuditRecord) -> Durable:
        """Queue `record`. It is journaled when someone waits on what this returns (with everything
        queued before it), or within `interval` seconds."""
        durable = Durable(self)
        if len(self._queue) >= self._max_queue:
            # Never dropped: the caller waits on it like any other; the writer catches up.
            log.warning("audit_queue_long", queued=len(self._queue))
        self._queue.append(_Queued(tenant_id, record, durable))
        return durable

    def backlog(self) -> tuple[int, int]:
        """(records waiting for the journal, records journaled but not yet in the store)."""
        return len(self._queue), len(self._journaled) + self._spilled_records

    def hold_directory(self) -> None:
        """Hold the journal directory for this process (see `audit_directory`); AuditUnavailable if
        another process holds it. Services do so before starting anything; `run` does if not yet."""
        if self._held is None:
            self._held = journal_directory.hold(self._dir)

    def adopt_directory(self, fd: int) -> None:
        """Write under a hold of the directory this process took itself (`bastion serve` holds it from
        before its preparation to after its server, so no other process takes it between the two):
        `release_directory` then leaves it held."""
        self._held, self._adopted = fd, True

    def release_directory(self) -> None:
        """Let the directory go; a CLI command's own directory is removed once nothing is left in it."""
        if self._held is not None:
            fd, self._held = self._held, None
            if not self._adopted:
                journal_directory.release(self._dir, fd, remove=journal_directory.is_command_directory(self._dir))

    async def run(self) -> None:
        held_here = self._held is None
        self.hold_directory()
        try:
            await self._try_recovery()
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(self._store_loop)
                while True:  # what nobody waits for is journaled within the interval
                    await anyio.sleep(self._interval)
                    try:
                        await self._journal()
                    except OSError as exc:  # the records stay queued; the next waiter or round tries again
                        log.error("audit_journal_failed", error=type(exc).__name__)
        finally:
            if held_here:
                self.release_directory()

    async def commit(self, tenant_id: str, record: AuditRecord) -> None:
        """Append `record` to its tenant's chain now, in its own transaction: for a call that must
        not reach its origin unless its record is in the store (not only in this replica's journal)."""
        try:
            async with self._store_lock:
                with anyio.CancelScope(shield=True):
                    await self._append([(tenant_id, record)])
        except (SQLAlchemyError, OSError) as exc:
            log.warning("audit_commit_failed", error=type(exc).__name__)
            raise AuditUnavailable(
                "the audit trail's store did not take this call's record, and this tool is not called "
                "without it (BASTION_AUDIT_STORE_FIRST); retry shortly"
            ) from exc

    async def flush(self) -> None:
        """Journal what is queued and write everything journaled to the store (tests, shutdown)."""
        await self._journal()
        await self._recover_spilled()
        await self._store()

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._journal()
            try:
                # What `_spill` let go of first: stored after newer records, the chain's order would
                # not be the calls'. If that fails, nothing newer is stored either: the next start
                # recovers every file, in order.
                await self._recover_spilled()
                await self._store()
            except (SQLAlchemyError, OSError) as exc:  # the journal keeps them for the next start
                log.warning("audit_store_unavailable_at_shutdown", records=self.backlog()[1], error=type(exc).__name__)
            if self._current is not None:
                self._current.close()

    # --- stage 1: the journal (group commit to local disk) -----------------------------------------
    async def _journal_for(self, durable: Durable) -> None:
        """Journal until `durable` is done. A waiter that finds no sync under way leads the next one:
        it lets the callers that are ready in this turn of the event loop queue theirs, then writes
        and syncs everything queued. Those arriving meanwhile wait for that sync to end, and find
        theirs done or lead the next one. Waiters drive the journal themselves: waking a writer task
        instead cost a task switch and a loop iteration per call."""
        while not durable.done:
            syncing = self._syncing
            if syncing is not None:
                await syncing.wait()
                continue
            syncing = self._syncing = asyncio.Event()
            try:
                await asyncio.sleep(0)  # without it, a sync on the loop took one record per sync
                await self._journal(until=durable)
            except OSError as exc:
                log.error("audit_journal_failed", error=type(exc).__name__)
                raise AuditUnavailable(
                    "the audit journal could not be written, and no call is answered without its record; retry shortly"
                ) from exc
            finally:
                self._syncing = None
                syncing.set()

    async def _journal(self, until: Durable | None = None) -> None:
        """Append what is queued to the journal file and fdatasync it once; then its waiters wake.

        The fdatasync runs on the event loop while syncs take under `_INLINE_SYNC_LIMIT` on average
        (on this machine's disk, alone: p50 0.15 ms, p99 0.6-0.8 ms, 0.6 % over 1 ms; more under
        load). Handing it to a worker thread cost about 100 µs of CPU and 120 µs of waiting per call
        at c=1 (`bench.audit`). When syncs get slow, the next ones go to a worker thread, so a slow
        disk does not stall the loop, until they are quick again. The average, not the last sync:
        against sending the next sync to the thread after any one over 1 ms (this disk has a few),
        Bastion's CPU per call under load fell 0-9 % at c=1 and c=32 (`bench.compare`: two builds
        under the same load at once). Keeping every sync on the loop saved a few percent more at
        c=32, but the other calls waited behind each sync there (p50 0-7 % higher), and a disk slow
        throughout would stall the loop on every one. What the callers queue meanwhile goes with
        the next sync. A batch that could not be written goes back to the head of the queue (recovery
        skips a record it meets twice).

        The lock is taken without a checkpoint when it is free (asyncio's Lock does not suspend
        then; anyio's looked up the current task on each acquire and release), and only the
        worker-thread sync is shielded (nothing else here awaits): a checkpoint and a shielded
        scope per call were 18 % of the journal's CPU at c=1 (a py-spy profile of `bench.audit`)."""
        lock = self._journal_lock
        await lock.acquire()
        try:
            if not self._queue or (until is not None and until.done):
                return
            batch = list(self._queue)
            self._queue.clear()
            try:
                await self._write(batch)
            except BaseException:
                self._queue.extendleft(reversed(batch))
                if self._current is not None:  # the next batch starts a file of its own
                    self._current.close()
                    self._current = None
                raise
            self._journaled.extend((queued.tenant_id, queued.record) for queued in batch)
            for queued in batch:
                queued.durable.done = True
        finally:
            lock.release()

    async def _write(self, batch: list[_Queued]) -> None:
        if self._current is None:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._sequence += 1
            self._current = self._journal_file(
                self._dir / f"audit-journal-{time.time_ns():020d}-{self._sequence:06d}.jsonl"
            )
            self._files.append(self._current.path)
        lines = b"".join(_journal_line(queued) for queued in batch)
        self._current.write(lines)
        if self._sync_seconds > _INLINE_SYNC_LIMIT:  # syncs have been slow: this one in a worker thread
            with anyio.CancelScope(shield=True):  # a batch written is always handed on, or put back
                took = await anyio.to_thread.run_sync(self._current.sync)
        else:
            took = self._current.sync()
        self._sync_seconds += (took - self._sync_seconds) * _SYNC_WEIGHT

    # --- stage 2: the store, in larger batches ----------------------------------------------------
    async def _try_recovery(self) -> None:
        self._adopt_at = time.monotonic() + self._adopt_seconds
        try:
            await self.recover()
        except (SQLAlchemyError, OSError) as exc:  # the files stay: each store round tries again
            log.warning("audit_journal_recovery_failed", error=type(exc).__name__)
        else:
            self._recovered = True

    async def _store_loop(self) -> None:
        while True:
            await anyio.sleep(self._store_interval)
            # The store was down at start (a crashed process's files wait), or a CLI command may have
            # been killed since with records in its own directory: looked for once a minute.
            if not self._recovered or time.monotonic() >= self._adopt_at:
                await self._try_recovery()
            try:
                await self._recover_spilled()  # what was let go of reaches the chain first
                await self._store()
            except (SQLAlchemyError, OSError) as exc:  # kept in the journal; tried again next round
                log.warning("audit_store_unavailable", records=len(self._journaled), error=type(exc).__name__)
                await self._spill()

    async def _spill(self) -> None:
        """During a store outage, past `max_unstored` records: let go of the copies in memory. Their
        journal files stay on disk and join `_spilled`, which `_recover_spilled` stores, file by
        file in the order they were written, before any record journaled since; what a half-done
        round had stored is skipped. Memory stays bounded however long the store is down (and while
        it catches up: see `_recover_spilled`); the disk holds the backlog, as it would anyway."""
        async with self._journal_lock:  # `_files` and the current file change only between syncs
            count = len(self._journaled)
            if count <= self._max_unstored:
                return
            if self._current is not None:  # new records start a file of their own
                self._current.close()
                self._current = None
            self._spilled.extend(self._files)
            self._spilled_records += count
            self._journaled, self._files = [], []
        log.warning("audit_store_backlog_spilled", records=count, files=len(self._spilled))

    async def _recover_spilled(self) -> None:
        """Store what `_spill` let go of, file by file, oldest first (SQLAlchemyError or OSError, with
        the rest kept, when the store fails). Between files, what arrived meanwhile is spilled in
        turn if it is past the bound, and stored in this same pass: catching up on a long outage
        does not hold the new records in memory."""
        if not self._spilled:
            return
        async with self._store_lock:
            while self._spilled:
                path = self._spilled[0]
                with anyio.CancelScope(shield=True):
                    stored = await self._recover_file(path)
                self._spilled.pop(0)
                self._spilled_records = max(0, self._spilled_records - stored) if self._spilled else 0
                await self._spill()

    async def _store(self) -> None:
        # One writer at a time (the loop, a flush, the shutdown): two would read the same chain
        # head, and batches must reach the chain in the order they were journaled.
        async with self._store_lock:
            await self._store_journaled()
            await self._pin_quiet_chains()

    async def _pin_quiet_chains(self) -> None:
        """Checkpoints for chains whose newest records wait for one past the policy's interval, with
        no record since to make it due: a quiet tenant's last records are signed within the
        interval, not whenever its next record comes."""
        checkpointer, now = self.checkpointer, self._clock()
        # Looked for only once an interval has passed since this process last stored records (a
        # chain that goes on getting records is pinned as it grows): an idle store sees no query.
        if checkpointer is None or self._quiet_check_at is None or now < self._quiet_check_at:
            return
        due = now - int(checkpointer.policy.seconds * 1_000_000)
        async with self._db.session(SYSTEM) as session:
            quiet = await session.scalars(
                select(AuditHead)
                .where(AuditHead.seq > AuditHead.checkpoint_seq, AuditHead.checkpoint_at_us <= due)
                .with_for_update()
            )
            for head in quiet.all():
                await checkpointer.pin(session, head, {head.seq: head.hash})
        self._quiet_check_at = None  # after the commit: a round that failed looks again

    async def _store_journaled(self) -> None:
        if not self._journaled:
            return
        # New records go to a new journal file from here on; these files hold exactly `taken`
        # (taken between two syncs: a file is never closed while a sync of it runs).
        async with self._journal_lock:
            taken, files = self._journaled, self._files
            self._journaled, self._files = [], []
            if self._current is not None:
                self._current.close()
                self._current = None
        stored = 0  # how many of `taken` are committed: only the rest are tried again
        try:
            with anyio.CancelScope(shield=True):
                for start in range(0, len(taken), self._batch_size):
                    await self._append(taken[start : start + self._batch_size])
                    stored = min(len(taken), start + self._batch_size)
        except BaseException:
            # A committed batch put back would be chained a second time, and its ids refused.
            self._journaled, self._files = taken[stored:] + self._journaled, files + self._files
            raise
        for path in files:
            path.unlink(missing_ok=True)

    async def recover(self) -> None:
        """At start: journal files a previous process left (it was killed, or the store was down)
        are written to the store in order, skipping records that had reached it already; so are
        those of CLI commands killed before they stored theirs (see `audit_directory`)."""
        if not self._dir.exists():
            return
        # Under the store lock, before any new batch, and shielded: cancelled half-way (a stop
        # during start-up), its database connection was left closing forever.
        async with self._store_lock:
            # Serving has begun by now: this process's own files (written, not yet stored) are
            # its store rounds' to write; recovered too, their records would be chained twice.
            # So are the files `_spill` let go of (`_recover_spilled` stores them, in order).
            own = {*self._files, *self._spilled, *([self._current.path] if self._current is not None else [])}
            with anyio.CancelScope(shield=True):
                for path in sorted(self._dir.glob("audit-journal-*.jsonl")):
                    if path not in own:
                        await self._recover_file(path)
                for directory, fd in journal_directory.orphans(journal_directory.commands_of(self._dir)):
                    try:
                        for path in sorted(directory.glob("audit-journal-*.jsonl")):
                            await self._recover_file(path)
                    finally:
                        journal_directory.release(directory, fd, remove=True)

    async def _recover_file(self, path: Path) -> int:
        """Store the records of one journal file the store lacks, then delete it; how many it stored."""
        # Plain file reads: recovery reads a few files once, at start (or until the store is back).
        records: list[tuple[str, AuditRecord]] = []
        try:
            content = path.read_bytes()  # noqa: ASYNC240
        except FileNotFoundError:  # taken by another recovery already
            return 0
        for line in journal_lines(content):
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # a line cut short by the crash: its call was never acknowledged
            try:
                tenant_id = data.pop("tenant_id")
                records.append((tenant_id, AuditRecord(**data)))
            except (AttributeError, KeyError, TypeError):
                # Whole, but not a record this version reads (another version's, or altered): kept
                # aside for a person to look at, never half-stored and never stopping the log.
                path.rename(path.with_name(path.name + ".unreadable"))  # noqa: ASYNC240
                log.error("audit_journal_file_unreadable", file=path.name)
                return 0
        stored = await self._stored_ids([record.id for _, record in records])
        missing = []
        for tenant, record in records:  # a batch written again after a failed sync appears twice
            if record.id not in stored:
                stored.add(record.id)
                missing.append((tenant, record))
        for start in range(0, len(missing), self._batch_size):
            await self._append(missing[start : start + self._batch_size])
        path.unlink()  # noqa: ASYNC240
        log.info("audit_journal_recovered", file=path.name, records=len(records), written=len(missing))
        return len(missing)

    # --- the store ----------------------------------------------------------------------------
    async def _stored_ids(self, ids: list[str]) -> set[str]:
        """Which of these record ids the store holds already."""
        stored: set[str] = set()
        async with self._db.session(SYSTEM) as session:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                stored.update(await session.scalars(select(AuditEntry.id).where(AuditEntry.id.in_(chunk))))
        return stored

    async def _append(self, batch: list[tuple[str, AuditRecord]]) -> None:
        for attempt in range(2):
            by_tenant: dict[str, list[AuditRecord]] = {}
            for tenant_id, record in batch:
                by_tenant.setdefault(tenant_id, []).append(record)
            try:
                async with self._db.session(SYSTEM) as session:
                    for tenant_id, records in by_tenant.items():
                        head = await lock_head(session, tenant_id, now_us=self._clock())
                        await extend_chain(session, head, records, self.checkpointer)
                if self.checkpointer is not None:  # if no record follows, these wait one interval at most
                    self._quiet_check_at = self._clock() + int(self.checkpointer.policy.seconds * 1_000_000)
                return
            except IntegrityError:
                if attempt:  # a second replica created the same head at once: once more, then give up
                    raise
                # Or this batch was committed once already, its reply lost (the connection dropped
                # during COMMIT, so it was put back): what the store holds is not chained twice.
                stored = await self._stored_ids([record.id for _, record in batch])
                batch = [(tenant_id, record) for tenant_id, record in batch if record.id not in stored]
                if not batch:
                    return


async def lock_head(session: AsyncSession, tenant_id: str, *, now_us: int) -> AuditHead:
    """The tenant's chain head, locked until the transaction ends (created for a first record:
    its checkpoint clock starts now)."""
    head = await session.get(AuditHead, tenant_id, with_for_update=True)
    if head is None:
        head = AuditHead(tenant_id=tenant_id, seq=0, hash=GENESIS, checkpoint_seq=0, checkpoint_at_us=now_us)
        session.add(head)
        await session.flush()
    return head


async def extend_chain(
    session: AsyncSession,
    head: AuditHead,
    records: list[AuditRecord],
    checkpointer: Checkpointer | None,
    *,
    force_checkpoint: bool = False,
) -> None:
    """Chain `records` after the locked `head`, move it, and sign the checkpoints now due."""
    rows: list[dict[str, Any]] = []
    seq, prev = head.seq, head.hash
    for record in records:
        seq += 1
        fields = _fitted(record.fields())  # once: the hash and the row both need it
        body = canonical(fields)
        if b"\\u0000" in body:  # a NUL somewhere (JSON escapes it so): PostgreSQL keeps none
            fields = storable_json(fields)
            body = canonical(fields)
        digest = chain_hash(prev, body)
        rows.append({**fields, "tenant_id": head.tenant_id, "seq": seq, "prev_hash": prev, "hash": digest})
        prev = digest
    await session.execute(insert(_ENTRIES), rows)
    head.seq, head.hash = seq, prev
    if checkpointer is not None:
        await checkpointer.pin(session, head, {row["seq"]: row["hash"] for row in rows}, force=force_checkpoint)


def _journal_line(queued: _Queued) -> bytes:
    """The record's journal line. A detail JSON cannot hold (a set or an object, from a plugin
    stage's decision) is kept as its repr, in the line and in the record the store gets: left as
    it was, it failed every sync from then on, and no forwarded call was answered again."""
    try:
        return orjson.dumps({"tenant_id": queued.tenant_id, **queued.record.fields()}) + b"\n"
    except TypeError:
        safe = orjson.loads(orjson.dumps(queued.record.detail, default=repr, option=orjson.OPT_NON_STR_KEYS))
        queued.record = dataclasses.replace(queued.record, detail=safe)
        return orjson.dumps({"tenant_id": queued.tenant_id, **queued.record.fields()}) + b"\n"


# Each text column's width: a record's field longer than its column is cut to it before it is hashed,
# so what is stored is what was hashed, and PostgreSQL (which refuses a longer value; SQLite keeps
# it) never refuses the batch, which would hold every tenant's records back.
_WIDTHS = {
    column.name: column.type.length
    for column in AuditEntry.__table__.columns
    if isinstance(column.type, String) and column.type.length is not None
}


def _fitted(fields: dict[str, Any]) -> dict[str, Any]:
    for name, value in fields.items():
        width = _WIDTHS.get(name)
        if width is not None and isinstance(value, str) and len(value) > width:
            fields[name] = value[:width]
    return fields

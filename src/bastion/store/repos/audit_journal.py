"""The audit journal's files (`bastion.store.repos.audit` writes and recovers them): one file of
JSON lines, written at an offset into space allocated ahead and fdatasync'ed after each batch."""

from __future__ import annotations

import errno
import os
import sys
import time
from pathlib import Path

__all__ = ["JournalFile", "journal_lines"]


class JournalFile:
    """One journal file, written at an offset into space allocated ahead (`posix_fallocate`), and
    cut back to what was written when closed.

    Why: `fdatasync` after an append also commits the file's new size; into space allocated
    ahead it commits less. Measured here with 600-byte records: 84 µs of CPU and 200-220 µs of
    waiting per write + sync when appending, 56 µs and 150-215 µs into allocated space. The part
    not yet written reads as zero bytes, which `journal_lines` drops."""

    _CHUNK = 256 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        # The file's name reaches the disk with its directory: synced once, at creation, so a power
        # loss cannot take away a file whose records were confirmed durable.
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        self._offset = 0
        self._allocated = 0

    def write(self, data: bytes) -> None:
        end = self._offset + len(data)
        if end > self._allocated:
            size = max(end, self._allocated + self._CHUNK)
            try:
                os.posix_fallocate(self._fd, self._allocated, size - self._allocated)
                self._allocated = size
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise
                self._allocated = sys.maxsize  # a filesystem that cannot allocate ahead: plain writes
        view = memoryview(data)
        while view:  # a regular file writes whole, short of a full disk (which raises)
            written = os.pwrite(self._fd, view, self._offset)
            view, self._offset = view[written:], self._offset + written

    def sync(self) -> float:
        """fdatasync; returns the seconds it took (the caller decides where the next one runs)."""
        started = time.perf_counter()
        os.fdatasync(self._fd)
        return time.perf_counter() - started

    def close(self) -> None:
        try:
            os.ftruncate(self._fd, self._offset)  # a closed file holds exactly its records
        except OSError:
            pass  # its tail stays zeros, which recovery drops
        finally:
            os.close(self._fd)


def journal_lines(content: bytes) -> list[bytes]:
    """A journal file's records: its unwritten tail (zeros, when a process died) dropped."""
    return content.rstrip(b"\0").splitlines()

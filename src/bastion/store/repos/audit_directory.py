"""Which process writes which audit journal directory: one per directory, held with a lock for its life.

Recovery writes to the store the journal files of its directory that this process did not write, so
a second live process on the same directory would have its records (journaled, not yet stored)
chained twice. A server therefore holds its directory (`hold`) before it starts anything, and a
second server on it is refused at once. A CLI command is a short-lived process with the server's
settings: it journals in a directory of its own under the server's `commands/`
(`command_directory`), removed when it ends with everything stored. A command killed before that
leaves its directory behind; whoever holds the server's directory adopts it (`orphans`) once its
lock is free.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from bastion.errors import AuditUnavailable

__all__ = ["COMMANDS", "command_directory", "commands_of", "hold", "is_command_directory", "orphans", "release"]

COMMANDS = "commands"
_LOCK = ".lock"
# A command makes its directory, then locks it: one younger than this may be between the two.
_GRACE_SECONDS = 60.0


def _try_lock(directory: Path) -> int | None:
    """The locked descriptor of `directory`'s lock file, or None if another process holds it."""
    fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def hold(directory: Path) -> int:
    """Lock `directory` (made if missing) for this process; AuditUnavailable if another holds it."""
    directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.mkdir(exist_ok=True, mode=0o700)
    fd = _try_lock(directory)
    if fd is None:
        raise AuditUnavailable(
            f"the audit journal directory {directory} is in use by another Bastion process: give each "
            "server its own (BASTION_AUDIT_JOURNAL_DIR)"
        )
    return fd


def release(directory: Path, fd: int, *, remove: bool) -> None:
    """Unlock `directory`; with `remove`, also delete it when no journal file is left in it."""
    try:
        if remove and not any(directory.glob("audit-journal-*")):
            (directory / _LOCK).unlink(missing_ok=True)
            directory.rmdir()
    except OSError:
        pass  # left for the server to adopt: it holds nothing, an empty directory is harmless
    finally:
        os.close(fd)  # releases the lock


def command_directory(journal_dir: Path) -> Path:
    """A directory of its own for one CLI command, under the server's journal directory."""
    return journal_dir / COMMANDS / f"{os.getpid()}-{secrets.token_hex(6)}"


def is_command_directory(directory: Path) -> bool:
    return directory.parent.name == COMMANDS


def commands_of(journal_dir: Path) -> Path:
    """Where the command directories that `journal_dir`'s process adopts are: under a server's
    directory; beside a command's own (a command adopts a killed one's too, wherever it runs)."""
    return journal_dir.parent if is_command_directory(journal_dir) else journal_dir / COMMANDS


def orphans(parent: Path) -> Iterator[tuple[Path, int]]:
    """Command directories in `parent` whose command has ended without removing them, each locked
    for the caller (who recovers its files, then `release(..., remove=True)`s it). One this process
    holds itself is not among them (its lock is taken), nor one it may not read."""
    try:
        found = sorted(parent.iterdir()) if parent.is_dir() else []
    except OSError:  # another user's, say: looked at again next time
        return
    settled = time.time() - _GRACE_SECONDS
    for directory in found:
        try:
            if not directory.is_dir() or directory.is_symlink() or directory.stat().st_mtime > settled:
                continue
            fd = _try_lock(directory)
        except OSError:
            continue  # removed meanwhile, or not ours to open: looked at again next time
        if fd is not None:
            yield directory, fd

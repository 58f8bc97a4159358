"""What Bastion's own process hides from other processes of its user.

A stdio origin runs as Bastion's user (with an environment of its own, `mcp/upstream/stdio.py`),
and any process of a user may read `/proc/<pid>/environ` of the others, where Bastion's
environment stays as it was at start: `BASTION_MASTER_KEY`, the admin password, the database URL.
`PR_SET_DUMPABLE` 0 hands those files to root and refuses other processes of the user a ptrace
attach (and the process leaves no core dump, which would hold the same secrets). Root keeps
both (CAP_SYS_PTRACE): profiling Bastion (`bench.profile`, py-spy) then needs root.

Hand-written with ctypes: the standard library has no `prctl`, and the one call is not worth a
dependency (python-prctl).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["PR_GET_DUMPABLE", "hide_process", "prctl"]

PR_GET_DUMPABLE = 3
_PR_SET_DUMPABLE = 4


def prctl(option: int, value: int = 0) -> int:
    """`prctl(2)` with one argument; -1 where there is none (not Linux) or it failed."""
    if not sys.platform.startswith("linux"):
        return -1
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return int(libc.prctl(option, value, 0, 0, 0))


def hide_process() -> bool:
    """Make this process's environment and memory unreadable to other processes of its user.
    False when Linux refused; True elsewhere, where there is no `/proc` to read them from."""
    return not sys.platform.startswith("linux") or prctl(_PR_SET_DUMPABLE, 0) == 0

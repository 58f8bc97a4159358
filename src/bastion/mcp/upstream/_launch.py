"""Apply resource limits to this process, then become the stdio origin.

Run as ``python -I -S _launch.py DATA_BYTES OPEN_FILES CPU_SECONDS EXECUTABLE [ARG...]``
(0 means "no limit"). Limits are set here, in a process of their own, rather than
in a `preexec_fn`: code run between fork and exec in a multi-threaded parent (Bastion
has resolver and database threads) can deadlock, and anyio does not offer it anyway.
`os.execv` runs EXECUTABLE exactly as given: no PATH search. Standard library only,
no `site`: it starts in milliseconds and depends on nothing installed.
"""

from __future__ import annotations

import os
import resource
import sys


def _cap(which: int, value: int) -> None:
    """Set soft and hard limit to `value` (never above the current hard limit)."""
    if value <= 0:
        return
    _soft, hard = resource.getrlimit(which)
    cap = value if hard == resource.RLIM_INFINITY else min(value, hard)
    # Hard as well as soft: the origin must not raise its own limit back.
    resource.setrlimit(which, (cap, cap))


def main(argv: list[str]) -> None:
    if len(argv) < 5:
        sys.stderr.write("usage: _launch.py DATA_BYTES OPEN_FILES CPU_SECONDS EXECUTABLE [ARG...]\n")
        os._exit(2)
    data_bytes, open_files, cpu_seconds = (int(value) for value in argv[1:4])
    command = argv[4:]
    try:
        # A crash must not write the origin's memory (credentials it was handed) to disk.
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        _cap(resource.RLIMIT_DATA, data_bytes)  # DATA, not AS: runtimes reserve address space they never use
        _cap(resource.RLIMIT_NOFILE, open_files)
        _cap(resource.RLIMIT_CPU, cpu_seconds)
    except (OSError, ValueError) as exc:
        # Fail closed: an origin must not run without the limits the operator set.
        sys.stderr.write(f"cannot apply resource limits: {exc}\n")
        os._exit(126)
    try:
        os.execv(command[0], command)  # noqa: S606 — no shell on purpose: the argv runs verbatim
    except OSError as exc:
        sys.stderr.write(f"cannot start {command[0]!r}: {exc.strerror}\n")
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv)

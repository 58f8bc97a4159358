"""Which stdio origins may run, and how: a command allowlist, a pinned executable, resource limits.

A stdio origin runs a program on Bastion's host, so registering one would be as good
as shell access if any command were accepted. The operator lists what may run
(`BASTION_STDIO_COMMANDS`): argv prefixes, each starting with an absolute executable
path. A command is allowed when its first elements equal an entry's, element by
element, as exact strings (no globs, no partial module names); arguments after the
prefix are the origin's own.

Registration pins the executable: a bare name is looked up on PATH then, once, and
the absolute path found is what is stored and later run, verbatim (`os.execv`, no
PATH search at spawn time). The path is made absolute and normalised but symlinks
are not resolved: a virtualenv's `bin/python` is a symlink whose own location is
what selects the virtualenv. The allowlist is checked again at every start against
the exact strings that will run, so a row written past the API (or an allowlist
narrowed since) never runs.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bastion.errors import BadRequest, UpstreamRefused, UpstreamUnavailable

__all__ = ["ChildLimits", "StdioPolicy"]

_LAUNCHER = Path(__file__).with_name("_launch.py")


@dataclass(frozen=True)
class ChildLimits:
    """Resource limits of each stdio origin process (0: no limit)."""

    data_bytes: int = 2 * 1024**3
    open_files: int = 1024
    # Off by default: RLIMIT_CPU counts a process's whole life, and origins are long-lived.
    cpu_seconds: int = 0

    def wrap(self, command: Sequence[str]) -> list[str]:
        """The argv that applies these limits, then runs `command[0]` exactly (see `_launch.py`)."""
        if sys.platform == "win32":  # no setrlimit or exec there: the command runs as is
            return list(command)
        limits = (str(self.data_bytes), str(self.open_files), str(self.cpu_seconds))
        # -I -S: the launcher runs with Bastion's own interpreter, ignoring PYTHON* variables and site.
        return [sys.executable, "-I", "-S", str(_LAUNCHER), *limits, *command]


def _normalise(entry: Sequence[str]) -> tuple[str, ...]:
    if not entry or not os.path.isabs(entry[0]):
        raise ValueError(f"stdio allowlist entry {list(entry)!r} must start with an absolute executable path")
    return (os.path.normpath(entry[0]), *entry[1:])


@dataclass(frozen=True)
class StdioPolicy:
    """The stdio command allowlist and the limits its processes run under."""

    allowed: tuple[tuple[str, ...], ...] = ()
    limits: ChildLimits = field(default_factory=ChildLimits)

    def __post_init__(self) -> None:
        # A malformed entry fails when the policy is built (start-up), not when an origin starts.
        object.__setattr__(self, "allowed", tuple(_normalise(entry) for entry in self.allowed))

    def allows(self, command: Sequence[str]) -> bool:
        """Whether `command`, exactly as it would run, starts with an allowlisted prefix."""
        return any(tuple(command[: len(entry)]) == entry for entry in self.allowed)

    def pin(self, command: Sequence[str]) -> list[str]:
        """Registration: the command with its executable resolved to an absolute path, if allowed.

        Raises BadRequest (the admin API's 400) when the executable cannot be found on
        PATH or the pinned command matches no allowlist entry.
        """
        executable = command[0]
        if not os.path.isabs(executable):
            found = shutil.which(executable)
            if found is None:
                raise BadRequest(f"{executable!r} was not found on Bastion's PATH: give its absolute path")
            executable = found
        pinned = [os.path.abspath(executable), *command[1:]]
        if not self.allows(pinned):
            raise BadRequest(
                f"the command {json.dumps(pinned)} is not on the stdio allowlist: an operator must add "
                "an argv prefix matching it to BASTION_STDIO_COMMANDS"
            )
        return pinned

    def launch_argv(self, origin: str, command: Sequence[str]) -> list[str]:
        """Spawn time: the argv to start `command` under the limits, after checking it again.

        The refusal names no path to MCP clients; administrators see the command in `detail`.
        """
        if not self.allows(command):
            raise UpstreamRefused(
                f"origin {origin!r} was not started: its command is not on the stdio allowlist",
                detail=f"origin {origin!r} was not started: its command {json.dumps(list(command))} matches "
                "no entry of BASTION_STDIO_COMMANDS",
            )
        executable = command[0]
        if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
            # Checked here because the launcher's own exec failure would only show as an exit code.
            raise UpstreamUnavailable(f"origin {origin!r}: cannot start {executable!r} (not an executable file)")
        return self.limits.wrap(command)

"""Bastion's process is hidden from other processes of its user (`bastion serve` calls
`hide_process` first): non-dumpable, so its environment (`/proc/<pid>/environ`), which holds its
secrets, becomes root's to read, whatever user Bastion runs as."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl and /proc are Linux's")

_SCRIPT = """
import os
from bastion.support.process import PR_GET_DUMPABLE, hide_process, prctl
print(prctl(PR_GET_DUMPABLE), os.stat("/proc/self/environ").st_uid)
assert hide_process()
print(prctl(PR_GET_DUMPABLE), os.stat("/proc/self/environ").st_uid)
"""


def test_a_hidden_process_is_not_dumpable_and_its_environment_is_roots() -> None:
    printed = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True).stdout
    before, before_owner, after, after_owner = (int(value) for value in printed.split())
    assert (before, before_owner) == (1, os.getuid())  # any process of this user could read it
    assert (after, after_owner) == (0, 0)

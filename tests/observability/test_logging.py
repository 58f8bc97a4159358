"""Logging with BASTION_LOG_FILE: the same JSON lines on stderr and in the file.

Each test configures structlog in a fresh interpreter: configuration is process-wide, and the
test process's own modules must not start writing to a temporary file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import sys
from pathlib import Path

import structlog

from bastion.observability.logging import configure_logging

configure_logging("info", Path(sys.argv[1]) if sys.argv[1] else None)
log = structlog.get_logger()
for n in range(int(sys.argv[2])):
    log.info("tick", n=n)
log.debug("below the threshold")
"""


def _run(log_file: Path | None, lines: int, cwd: Path) -> str:
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(log_file or ""), str(lines)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return completed.stderr


def test_with_a_log_file_each_line_goes_to_stderr_and_to_the_file(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "bastion.log"  # its directory is created
    stderr = _run(log_file, 3, tmp_path)
    written = log_file.read_text(encoding="utf-8")
    assert written == stderr
    assert [json.loads(line)["n"] for line in written.splitlines()] == [0, 1, 2]


def test_without_a_log_file_stderr_is_as_before_and_no_file_appears(tmp_path: Path) -> None:
    stderr = _run(None, 2, tmp_path)
    assert [json.loads(line)["event"] for line in stderr.splitlines()] == ["tick", "tick"]
    assert list(tmp_path.iterdir()) == []

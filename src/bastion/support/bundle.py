"""The support bundle itself: settings, versions, health and recent log lines in one .tar.gz.

Every part is gathered so that a broken installation still yields a bundle: settings that do
not validate are reported as such (health is then skipped), a check that fails says why, and a
missing log file is a note in the manifest. What might hold a secret passes through a redactor
before it is written: the settings field by field (`settings_view`), the log lines and error
messages as text (`bastion.observability.redact`).
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import socket
import sys
import tarfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError
from pydantic_settings import SettingsError

from bastion import __version__
from bastion.config import Settings
from bastion.observability.redact import redact_text
from bastion.support import health
from bastion.support.settings_view import settings_failure, settings_view

__all__ = ["Bundle", "write_bundle"]

_DISTRIBUTION = "bastion-gateway"
# Reported even when the distribution's metadata is missing (run from a source tree).
_KEY_PACKAGES = (
    "mcp", "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "aiosqlite", "asyncpg", "pydantic",
    "pydantic-core", "pydantic-settings", "joserfc", "cryptography", "redis", "structlog", "typer", "hvac",
)  # fmt: skip
_REQUIREMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_FILES = {
    "manifest.json": "this file: when, where and by what the bundle was made, and what each file holds",
    "config.json": "every setting, secrets as <redacted> (null: not set); which were set explicitly; "
    "BASTION_* variables no setting reads",
    "versions.json": "Bastion, Python, the platform, and the installed versions of Bastion's dependencies",
    "health.json": "database, schema revision, vault keys, Redis, audit journal and posture checks: "
    "ok, failed (with the reason) or skipped",
    "logs.jsonl": "the last lines of BASTION_LOG_FILE (rotated files included), each passed through the redactor",
}


@dataclass(frozen=True)
class Bundle:
    path: Path
    summary: str


def write_bundle(out: Path, *, log_lines: int, check_seconds: float = 10.0) -> Bundle:
    """Gather everything and write the archive to `out` (mode 0600); never raises for what it finds."""
    notes: list[str] = []
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as error:
        config = settings_failure(error)
        checks = {"settings": {"status": "failed", "detail": "the settings do not validate: see config.json"}}
        notes.append("the settings do not validate (config.json says why): no health checks")
        # From the environment: when the settings do not validate, the logs matter most.
        log_file = Path(raw) if (raw := os.environ.get("BASTION_LOG_FILE")) else None
    else:
        config = settings_view(settings)
        checks = anyio.run(lambda: health.collect(settings, check_seconds=check_seconds))
        log_file = settings.log_file
    lines = [redact_text(line) for line in _last_lines(log_file, log_lines)] if log_file else []
    if log_file is None:
        notes.append("BASTION_LOG_FILE is not set: no log lines collected (set it to keep logs in a file)")
    elif not lines:
        notes.append(f"BASTION_LOG_FILE ({log_file}) is missing or empty")
    manifest = {
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "bastion_version": __version__,
        "log_file": None if log_file is None else str(log_file),
        "log_lines_requested": log_lines,
        "log_lines_included": len(lines),
        "files": _FILES,
        "notes": notes,
    }
    files = {
        "manifest.json": _json(manifest),
        "config.json": _json(config),
        "versions.json": _json(_versions()),
        "health.json": _json(checks),
        "logs.jsonl": "".join(line + "\n" for line in lines).encode(),
    }
    _write_archive(out, files)
    return Bundle(out, _summary(checks, len(lines)))


def _versions() -> dict[str, Any]:
    return {
        "bastion": __version__,
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": {name: _installed(name) for name in sorted(_packages(), key=str.lower)},
    }


def _packages() -> set[str]:
    try:
        requirements = metadata.requires(_DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        requirements = []
    names = {_DISTRIBUTION, *_KEY_PACKAGES}
    for requirement in requirements:
        if "test" in requirement.partition(";")[2]:
            continue  # the test extra: not what runs in production
        if match := _REQUIREMENT_NAME.match(requirement):
            names.add(match[0])
    return names


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _last_lines(log_file: Path, count: int) -> list[str]:
    """The last `count` lines across the rotated files (oldest first: .3, .2, .1, then the file)."""
    last: deque[str] = deque(maxlen=count)
    for path in _rotated(log_file):
        try:
            with path.open(encoding="utf-8", errors="replace") as lines:
                last.extend(line.rstrip("\r\n") for line in lines)
        except FileNotFoundError:
            continue  # rotated away meanwhile, or never made
    return list(last)


def _rotated(log_file: Path) -> Iterator[Path]:
    backups = sorted(
        (p for p in log_file.parent.glob(log_file.name + ".*") if p.suffix[1:].isdigit()),
        key=lambda p: int(p.suffix[1:]),
        reverse=True,
    )
    yield from backups
    yield log_file


def _summary(checks: dict[str, dict[str, Any]], lines: int) -> str:
    states = ", ".join(f"{name.replace('_', ' ')} {check['status']}" for name, check in checks.items())
    return f"{states}; {lines} log line{'' if lines == 1 else 's'}"


def _json(document: Any) -> bytes:
    return (json.dumps(document, indent=2, default=str) + "\n").encode()


def _write_archive(out: Path, files: dict[str, bytes]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    # 0600 from the start: redacted, yet still this installation's layout and logs. A file already
    # there keeps its mode through O_CREAT: set it; a symlink there is refused, not written through.
    descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(descriptor, 0o600)
    with os.fdopen(descriptor, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
        now = time.time()
        for name, data in files.items():
            member = tarfile.TarInfo(f"bastion-support/{name}")
            member.size, member.mtime, member.mode = len(data), now, 0o600
            archive.addfile(member, io.BytesIO(data))

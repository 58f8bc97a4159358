"""Structured JSON logs via structlog; every line carries the request's correlation id.

The lines go to stderr; with BASTION_LOG_FILE, the same lines go to that file too, rotated by
size with the standard library's RotatingFileHandler (what `bastion support bundle` reads).
"""

from __future__ import annotations

import logging
import sys
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_ROTATE_BYTES = 10 * 1024 * 1024
_ROTATE_KEEP = 3


def configure_logging(level: str, log_file: Path | None = None) -> None:
    previous = structlog.get_config()["logger_factory"]
    if isinstance(previous, _TeeFactory):
        previous.close()  # configured again: the earlier file is not left open
    factory: Any = structlog.PrintLoggerFactory(sys.stderr) if log_file is None else _TeeFactory(sys.stderr, log_file)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


class _TeeLogger:
    """Each rendered line to stderr, exactly as without a file, and to the rotating file."""

    def __init__(self, stderr: structlog.PrintLogger, file: RotatingFileHandler) -> None:
        self._stderr = stderr
        self._file = file

    def msg(self, message: str) -> None:
        self._stderr.msg(message)
        # The level was decided by structlog's filter; the handler only writes and rotates.
        self._file.handle(logging.makeLogRecord({"msg": message, "levelno": logging.INFO, "levelname": "INFO"}))

    log = debug = info = warn = warning = err = error = critical = exception = fatal = failure = msg


class _TeeFactory:
    def __init__(self, stderr: TextIO, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(
            path, maxBytes=_ROTATE_BYTES, backupCount=_ROTATE_KEEP, encoding="utf-8", delay=True
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = _TeeLogger(structlog.PrintLogger(stderr), handler)
        self._handler = handler

    def __call__(self, *_args: Any) -> _TeeLogger:
        return self._logger

    def close(self) -> None:
        self._handler.close()

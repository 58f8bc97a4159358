"""A stdio test origin that probes the resource limits Bastion starts it under.

Each tool tries to exceed one limit and reports what the limit did; the process
survives, so the test sees the failure through the origin's own tool error.
Run: python -m tests.origins.limited
"""

from __future__ import annotations

import os
import resource

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("limited")


@server.tool()
def limits() -> dict[str, list[int]]:
    """The (soft, hard) limits this process runs under; -1 is unlimited."""
    names = {"data": resource.RLIMIT_DATA, "open_files": resource.RLIMIT_NOFILE, "core": resource.RLIMIT_CORE}
    return {name: list(resource.getrlimit(which)) for name, which in names.items()}


@server.tool()
def open_files(count: int) -> str:
    """Open `count` more files at once; fails with EMFILE beyond the open-file limit."""
    opened: list[int] = []
    try:
        for _ in range(count):
            opened.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:  # a ToolError's text reaches the caller; a crash's text would not
        raise ToolError(f"opened {len(opened)} of {count}: {exc.strerror}") from exc
    finally:
        for fd in opened:
            os.close(fd)
    return f"opened {count} files"


@server.tool()
def allocate(megabytes: int) -> str:
    """Allocate `megabytes` at once; fails with MemoryError beyond the data limit."""
    try:
        block = bytearray(megabytes * 1024 * 1024)
    except MemoryError as exc:
        raise ToolError(f"cannot allocate {megabytes} MiB: MemoryError") from exc
    return f"allocated {len(block) // (1024 * 1024)} MiB"


if __name__ == "__main__":
    server.run()

"""The strings inside arguments and results: walked with their paths, replaced without mutating.

Results are MCP wire dicts; the walk skips the keys that are structure rather than content
(`type`, `mimeType`, `uri`, ...), so a detector never rewrites a content block's type. Inside
`structuredContent` (the tool's own JSON) every key is content. A value nested deeper than the
walk goes is refused, never passed on unread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from bastion.errors import PolicyDenied

__all__ = ["map_strings", "strings"]

_STRUCTURAL = frozenset({"type", "mimeType", "uri", "resultType", "role", "_meta", "annotations", "name"})
_MAX_DEPTH = 64  # bodies are depth-limited at the edge; this bounds the walk on its own
_FREE_FORM = "structuredContent"


def _too_deep() -> PolicyDenied:
    return PolicyDenied(f"the data is nested more than {_MAX_DEPTH} levels deep: too deep to check, so not passed on")


def strings(value: Any, where: str = "", depth: int = 0, *, arguments: bool = False) -> Iterator[tuple[str, str]]:
    """(path, text) for every string leaf. `arguments`: every key is content (a tool's `name`
    argument is a value like any other), else structural keys are skipped."""
    if depth > _MAX_DEPTH:
        raise _too_deep()
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, inner in value.items():
            if not arguments and key in _STRUCTURAL:
                continue
            free = arguments or key == _FREE_FORM
            yield from strings(inner, f"{where}.{key}" if where else str(key), depth + 1, arguments=free)
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            yield from strings(inner, f"{where}[{index}]", depth + 1, arguments=arguments)


def map_strings(value: Any, change: Callable[[str], str], depth: int = 0, *, arguments: bool = False) -> Any:
    """A copy of `value` with every string leaf replaced by `change(text)` (the same object when
    nothing changed, so an untouched result costs no copy)."""
    if depth > _MAX_DEPTH:
        raise _too_deep()
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        changed = False
        out: dict[str, Any] = {}
        for key, inner in value.items():
            if not arguments and key in _STRUCTURAL:
                out[key] = inner
                continue
            new = map_strings(inner, change, depth + 1, arguments=arguments or key == _FREE_FORM)
            changed = changed or new is not inner
            out[key] = new
        return out if changed else value
    if isinstance(value, list):
        items = [map_strings(inner, change, depth + 1, arguments=arguments) for inner in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value

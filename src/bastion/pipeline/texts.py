"""The strings inside arguments and results: walked with their paths, replaced without mutating.

Results are MCP wire dicts; the walk skips only the keys whose values the protocol fixes
(`type`, `role`, `resultType`: checked against their few allowed values with `mcp.types`), so a
detector never rewrites a content block's type. Everything else an origin wrote is read: a
resource link's `name` and `uri`, `mimeType`, `annotations`, `_meta`. Inside arguments and
`structuredContent` (the tool's own JSON) every key is content too, and is read as a string of
its own (a secret used as a key is still a secret); `map_strings` never rewrites a key. A value
nested deeper than the walk goes is refused, never passed on unread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from bastion.errors import PolicyDenied

__all__ = ["KEY_SUFFIX", "map_strings", "splice", "strings"]

_STRUCTURAL = frozenset({"type", "resultType", "role"})
KEY_SUFFIX = " (a key)"  # ends the path `strings` gives a key read as text: the dict's, not the key's
_MAX_DEPTH = 64  # bodies are depth-limited at the edge; this bounds the walk on its own
_FREE_FORM = "structuredContent"


def _fixed_word(value: Any) -> bool:
    """What MCP's schema puts under a structural name (`"type": "text"`, `"role": "user"`): skipped,
    as nothing to find there. Any other text under those names (an origin's `"type": "AKIA..."`
    anywhere in its result) is read like the rest. Asked only for those names (the hot path tests
    the name first)."""
    return isinstance(value, str) and len(value) <= 32 and value.isidentifier() and value.islower()


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
            if not arguments and key in _STRUCTURAL and _fixed_word(inner):
                continue
            path = f"{where}.{key}" if where else str(key)
            if arguments and isinstance(key, str):
                # Named by where it sits, never by its text: the path goes into errors and the trail.
                yield f"{where or '(top)'}{KEY_SUFFIX}", key
            free = arguments or key == _FREE_FORM
            yield from strings(inner, path, depth + 1, arguments=free)
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
            if not arguments and key in _STRUCTURAL and _fixed_word(inner):
                out[key] = inner
                continue
            new = map_strings(inner, change, depth + 1, arguments=arguments or key == _FREE_FORM)
            changed = changed or new is not inner
            out[key] = new  # keys are read (`strings`), never rewritten: two could become one
        return out if changed else value
    if isinstance(value, list):
        items = [map_strings(inner, change, depth + 1, arguments=arguments) for inner in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    return value


def splice(text: str, changes: Iterable[tuple[int, int, str]]) -> str:
    """`text` with each (start, end, replacement) span replaced; spans sorted by start and disjoint.
    In one pass: rebuilding the whole string per span cost time quadratic in the number of findings
    (800 kB of keys in a result: 4.8 s on the event loop)."""
    pieces: list[str] = []
    at = 0
    for start, end, replacement in changes:
        pieces.append(text[at:start])
        pieces.append(replacement)
        at = end
    if not pieces:
        return text
    pieces.append(text[at:])
    return "".join(pieces)

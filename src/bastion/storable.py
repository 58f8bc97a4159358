"""Text every store Bastion supports can keep.

PostgreSQL's text types refuse NUL (U+0000), and requests can carry one (a JSON string, a form
field, a percent-encoded path). What Bastion records about a request (audit records, API-token
uses, login attempts) must never be refused for that: one such record would fail its whole batch,
round after round. Hand-written: one replacement, checked first because it is almost never needed.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REPLACEMENT", "storable", "storable_json"]

REPLACEMENT = "\ufffd"  # U+FFFD: a character that could not be kept


def storable(text: str) -> str:
    return text.replace("\x00", REPLACEMENT) if "\x00" in text else text


def storable_json(value: Any) -> Any:
    """`value` (JSON: dicts, lists, strings, numbers) with every string and key made storable."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(k) if isinstance(k, str) else k: storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value

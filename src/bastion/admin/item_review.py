"""What an administrator reviews of an origin's items: the scan's flags, and for a quarantined item
the change since it was approved, as a unified diff of the two definitions."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from bastion.admin.schemas import ItemOut, OriginOut, shown_command, shown_url
from bastion.pipeline.poisoning import scan_definition
from bastion.store.models import Origin, OriginItem

__all__ = ["catalog_digest", "origin_out", "scan_flags"]

_MAX_DIFF = 20_000  # characters of diff shown; a longer change is cut with a note


def scan_flags(items: Sequence[tuple[str, str, dict[str, Any]]]) -> dict[tuple[str, str], list[dict[str, str]]]:
    """The poisoning scan of each discovered item (`bastion.pipeline.poisoning`), as stored."""
    tools = {name for kind, name, _ in items if kind == "tool"}
    flags: dict[tuple[str, str], list[dict[str, str]]] = {}
    for kind, name, definition in items:
        found = scan_definition(kind, definition, other_tools=tools - {name})
        if found:
            flags[(kind, name)] = [
                {"rule": f.rule, "where": f.where, "excerpt": f.excerpt, "severity": f.severity} for f in found[:20]
            ]
    return flags


def catalog_digest(items: Sequence[OriginItem]) -> str:
    """One digest of everything an origin offers now (each item's kind, name and definition digest):
    what a reviewer names when approving, so that an origin changing its items between the look and
    the approval (a rug pull timed for the review) is caught, not pinned."""
    lines = sorted(f"{item.kind}\0{item.name}\0{item.digest}" for item in items)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def origin_out(origin: Origin, items: Sequence[OriginItem] | None = None) -> OriginOut:
    """The origin as the API shows it; with its items (one origin), their catalog digest too (a list
    of origins shows neither: a digest of no items would name a catalog nobody saw)."""
    out = OriginOut.model_validate(origin, from_attributes=True)
    out.command, out.url = shown_command(out.command), shown_url(out.url)  # no secret an older registration kept
    if items is not None:
        out.items = [_item_out(origin, item) for item in items]
        out.catalog_digest = catalog_digest(items)
    return out


def _item_out(origin: Origin, item: OriginItem) -> ItemOut:
    quarantined = origin.status == "approved" and item.unapproved
    return ItemOut(
        kind=item.kind,
        name=item.name,
        digest=item.digest,
        definition=item.definition,
        pinned_digest=item.pinned_digest,
        quarantined=quarantined,
        flags=list(item.flags or ()),
        change=_diff(item.pinned_definition, item.definition) if quarantined else None,
    )


def _diff(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    if before is None:
        return "never approved: the whole definition is new"
    old = json.dumps(before, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    new = json.dumps(after, indent=2, sort_keys=True, ensure_ascii=False).splitlines()
    text = "\n".join(difflib.unified_diff(old, new, "approved", "offered now", lineterm=""))
    return text if len(text) <= _MAX_DIFF else text[:_MAX_DIFF] + "\n... (diff cut)"

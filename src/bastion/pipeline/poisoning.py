"""Tool poisoning: instructions to the model hidden in what an origin says its items are.

Owns the discovery-time scan of one item definition (MCP wire dicts: a tool, resource, resource
template or prompt). A client hands the model the whole definition, so every text in it is read,
not only the description: the name and title, each schema's property names, descriptions,
titles, defaults, enums, consts and examples at any depth, the annotations, a prompt's arguments,
a resource's URI. Each goes to `bastion.pipeline.injection.scan_text` (the rules are in
`bastion.pipeline.injection_rules`), with where it sits ("inputSchema.properties.a.description").
Left out: `_meta` and `icons`, which clients do not show the model.

Names (the item's, a property's, an argument's) are also read with their separators as spaces,
so "ignore_previous_instructions" or "doNotTellTheUser" meet the phrase rules; the catalog's
other tool names count for shadowing everywhere except in names, and the item's own name never
does. The walk is iterative and bounded (depth, nodes, characters): a definition past a bound gets
an "unscanned" flag, high, because what was not read may hide anything and no ordinary schema
comes near the bounds. At most `MAX_FLAGS` flags per definition.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection, Mapping
from typing import Any

from bastion.pipeline.injection import Flag, scan_text

__all__ = ["scan_definition"]

KINDS = frozenset({"tool", "resource", "resource_template", "prompt"})
MAX_DEPTH = 32  # JSON Schemas in the wild nest a handful of levels
MAX_NODES = 10_000  # dicts, lists and strings visited
MAX_CHARS = 500_000  # characters scanned, keys included
MAX_FLAGS = 100
_SKIPPED = frozenset({"_meta", "icons"})
# Keys that are MCP or JSON Schema structure, not words an origin chose: not scanned themselves.
_KEYWORDS = frozenset(
    {
        "name", "title", "description", "inputSchema", "outputSchema", "annotations", "arguments", "required",
        "uri", "uriTemplate", "mimeType", "size", "type", "properties", "items", "enum", "const", "default",
        "examples", "format", "pattern", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength",
        "maxLength", "minItems", "maxItems", "uniqueItems", "additionalProperties", "patternProperties",
        "propertyNames", "$schema", "$id", "$ref", "$defs", "definitions", "$comment", "allOf", "anyOf", "oneOf",
        "not", "if", "then", "else", "prefixItems", "contains", "minProperties", "maxProperties", "multipleOf",
        "dependentRequired", "dependentSchemas", "readOnly", "writeOnly", "deprecated", "nullable",
        "contentEncoding", "contentMediaType", "readOnlyHint", "destructiveHint", "idempotentHint",
        "openWorldHint", "audience", "priority", "lastModified", "execution", "taskSupport",
    }
)  # fmt: skip
_NAME_FIELDS = frozenset({"name"})  # string values that are identifiers, like property names
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = str.maketrans("_-.", "   ")
# Base64 a model can decode and obey ("Config: aWdub3JlIGFsbCBwcmV2aW91cy..."); only here, not on the
# hot path, where results carry base64 images and files by design.
_BASE64 = re.compile(r"[A-Za-z0-9+/]{32,}={0,2}")


def scan_definition(kind: str, definition: Mapping[str, Any], *, other_tools: Collection[str] = ()) -> list[Flag]:
    """Every text an item definition carries that a model reads: name, title, description, and in the
    schemas every property's description/title/default/enum strings and examples (recursively, with a
    depth/size bound), annotations' title; a prompt's argument descriptions; a resource's description."""
    if kind not in KINDS:
        raise ValueError(f"unknown item kind {kind!r}; one of {sorted(KINDS)}")
    own = definition.get("name")
    own_name = own.lower() if isinstance(own, str) else ""
    others = frozenset(t for t in other_tools if t.lower() != own_name)
    walk = _Walk(others)
    walk.run(definition)
    return sorted(walk.flags, key=lambda flag: flag.severity != "high")  # high first, else in the walk's order


class _Walk:
    """One definition's texts, depth first, within the bounds."""

    def __init__(self, other_tools: frozenset[str]) -> None:
        self.other_tools = other_tools
        self.flags: list[Flag] = []
        self.nodes = 0
        self.chars = 0
        self.cut_short = False

    def run(self, definition: Mapping[str, Any]) -> None:
        stack: list[tuple[Any, str, int, bool]] = [(definition, "", 0, False)]  # value, where, depth, is a name
        while stack and not self.cut_short and len(self.flags) < MAX_FLAGS:
            value, where, depth, is_name = stack.pop()
            self.nodes += 1
            if depth > MAX_DEPTH:
                self._cut(where, f"nested deeper than {MAX_DEPTH} levels; not scanned past here")
            elif self.nodes > MAX_NODES:
                self._cut(where, f"more than {MAX_NODES} values; not scanned past here")
            elif isinstance(value, str):
                self._scan(value, where or "value", is_name)
            elif isinstance(value, Mapping):
                children: list[tuple[Any, str, int, bool]] = []
                for key, inner in value.items():
                    if not isinstance(key, str) or key in _SKIPPED:
                        continue
                    inner_where = f"{where}.{_label(key)}" if where else _label(key)
                    if key not in _KEYWORDS:  # a property name, or a field an origin invented
                        children.append((key, inner_where, depth + 1, True))
                    children.append((inner, inner_where, depth + 1, key in _NAME_FIELDS))
                stack.extend(reversed(children))  # popped in the definition's order
            elif isinstance(value, list):
                items = [(inner, f"{where}[{i}]", depth + 1, False) for i, inner in enumerate(value)]
                stack.extend(reversed(items))
        del self.flags[MAX_FLAGS:]

    def _scan(self, text: str, where: str, is_name: bool) -> None:
        self.chars += len(text)
        if self.chars > MAX_CHARS:
            self._cut(where, f"more than {MAX_CHARS} characters of text; not scanned past here")
            return
        if not is_name:
            self.flags += scan_text(text, where, other_tools=self.other_tools) + _encoded(text, where)
            return
        found = scan_text(text, where)
        spaced = _CAMEL.sub(" ", text).translate(_SEPARATORS)
        if spaced != text:  # "ignore_previous_instructions", "doNotTellTheUser"
            rules = {flag.rule for flag in found}
            found += [flag for flag in scan_text(spaced, where) if flag.rule not in rules]
        self.flags += found

    def _cut(self, where: str, why: str) -> None:
        self.cut_short = True
        self.flags.append(Flag("unscanned", where or "definition", why[:80], "high"))


def _encoded(text: str, where: str) -> list[Flag]:
    """An "encoded_instructions" flag for each base64 run (up to 5) whose text the rules flag."""
    flags = []
    for m in _BASE64.finditer(text):
        run = m.group()
        try:
            decoded = base64.b64decode(run + "=" * (-len(run) % 4), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            continue  # not base64 of text: a digest, a path, an identifier
        found = scan_text(decoded, where)
        if found:
            high = any(flag.severity == "high" for flag in found)
            excerpt = _printable(f"base64 of: {decoded}", 80)
            flags.append(Flag("encoded_instructions", where, excerpt, "high" if high else "low"))
        if len(flags) == 5:
            break
    return flags


def _label(key: str) -> str:
    """A key as a path segment: printable, at most 40 characters (an origin chooses it)."""
    return _printable(key, 40) or '""'


def _printable(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, the unprintable ones escaped as `Flag.excerpt` shows them."""
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text[:limit])[:limit]

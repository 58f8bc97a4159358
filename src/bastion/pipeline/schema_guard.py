"""Arguments checked against the item's pinned input schema before they leave Bastion.

JSON Schema validation is `jsonschema`'s (the draft the schema declares, 2020-12 when it names
none, as MCP says); this module adds what a gateway wants beyond the schema: arguments the
schema does not declare are refused even where the schema forgot `additionalProperties`, and
every string has a length bound. Errors name the field path, never the value.

Valid arguments (nearly every call) are first checked by `jsonschema_rs`: 0.2 µs against 9.6 for
`jsonschema` on the bench's one-field schema (`timeit`). Only what it finds invalid goes to
`jsonschema`, whose verdict and error then stand: the two differ only at the edges of the spec
(regular expression dialects), and there `jsonschema` decides as before. A schema it cannot
compile is left to `jsonschema` alone. Neither fetches a `$ref` outside the schema (`offline`, an
empty registry): such a schema refuses the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jsonschema_rs
from jsonschema import Draft202012Validator, SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry
from referencing.exceptions import Unresolvable

from bastion.errors import InvalidParams, UpstreamProtocolError
from bastion.pipeline.base import ALLOW, CallContext, Decision, StageBase
from bastion.pipeline.config import SchemaGuardSettings

__all__ = ["SchemaGuard"]

_SHOWN_PATH = 128  # characters of a field path in errors and the trail: names are the client's, any length

_CACHE_LIMIT = 4096  # compiled validators kept; a new snapshot brings new definitions
_NO_RETRIEVAL: Registry[Any] = Registry()


class SchemaGuard(StageBase):
    name = "schema_guard"

    def __init__(self) -> None:
        # id(schema) → (schema, jsonschema's validator, jsonschema_rs' or None): the schema is kept so
        # its id cannot be reused.
        self._validators: dict[int, tuple[Mapping[str, Any], Validator, Any]] = {}

    async def on_request(self, ctx: CallContext) -> Decision:
        settings: SchemaGuardSettings = ctx.settings["schema_guard"]
        if not settings.enabled or ctx.method != "tools/call":
            return ALLOW
        schema = ctx.item.definition.get("inputSchema")
        if not isinstance(schema, Mapping):
            return Decision.deny(UpstreamProtocolError(f"tool {ctx.item.exposed_name!r} has no input schema"))
        arguments = ctx.arguments
        compiled = self._compiled(schema)
        if compiled is None:
            return Decision.deny(
                UpstreamProtocolError(
                    f"tool {ctx.item.exposed_name!r} has an invalid input schema; an administrator must review it"
                )
            )
        validator, fast = compiled
        verdict = _fast_verdict(fast, arguments)
        try:
            error = None if verdict else next(iter(validator.iter_errors(arguments)), None)
        except Unresolvable:  # a `$ref` to anything outside the schema itself: never fetched
            return Decision.deny(
                UpstreamProtocolError(
                    f"tool {ctx.item.exposed_name!r} has an input schema that refers to a document outside it, "
                    "which Bastion does not fetch; an administrator must review it"
                )
            )
        if error is None and verdict is False:
            # jsonschema_rs refused what `jsonschema` lets through: its verdict stands. They differ on
            # regular expressions: JSON Schema's are ECMA-262's, where `$` ends the text; Python's
            # `re.search`, which `jsonschema` uses, also lets `$` match before a final newline.
            path = _fast_path(fast, arguments)[:_SHOWN_PATH] or "arguments"
            return Decision.deny(
                InvalidParams(f"invalid arguments for {ctx.item.exposed_name!r}: {path}: does not match the schema"),
                detail={"field": path},
            )
        if error is not None:
            path = _path(error.absolute_path)[:_SHOWN_PATH] or "arguments"
            return Decision.deny(
                InvalidParams(
                    f"invalid arguments for {ctx.item.exposed_name!r}: {path}: "
                    f"{_message(error.validator, error.validator_value)}"
                ),
                detail={"field": path[:_SHOWN_PATH]},
            )
        if settings.reject_unknown_properties and "additionalProperties" not in schema:
            declared = schema.get("properties") or {}
            unknown = sorted(key for key in arguments if key not in declared)
            if unknown:
                return Decision.deny(
                    InvalidParams(
                        f"invalid arguments for {ctx.item.exposed_name!r}: unknown properties: "
                        + ", ".join(repr(k[:64]) for k in unknown[:10])
                    ),
                    detail={"field": unknown[0][:64]},
                )
        too_long = _too_long(arguments, settings.max_string_length, "")
        if too_long is not None:
            return Decision.deny(
                InvalidParams(
                    f"invalid arguments for {ctx.item.exposed_name!r}: {too_long or 'arguments'}: "
                    f"longer than {settings.max_string_length} characters"
                ),
                detail={"field": too_long[:_SHOWN_PATH]},
            )
        return ALLOW

    def _compiled(self, schema: Mapping[str, Any]) -> tuple[Validator, Any] | None:
        """Both validators of `schema` (jsonschema_rs' None when it cannot compile it), or None for
        a schema that is not valid JSON Schema."""
        cached = self._validators.get(id(schema))
        if cached is not None and cached[0] is schema:
            return cached[1], cached[2]
        cls = validator_for(schema, default=Draft202012Validator)
        try:
            cls.check_schema(dict(schema))
        except SchemaError:
            return None
        if len(self._validators) >= _CACHE_LIMIT:
            self._validators.clear()
        # An empty registry: a `$ref` outside the schema is unresolvable. jsonschema's default
        # fetched it over HTTP (urllib, on the event loop, around the egress policy).
        validator: Validator = cls(schema, registry=_NO_RETRIEVAL)
        try:
            fast: Any = jsonschema_rs.validator_for(dict(schema), offline=True)
        except (jsonschema_rs.ValidationError, ValueError, TypeError):
            fast = None  # jsonschema alone decides for this one
        self._validators[id(schema)] = (schema, validator, fast)
        return validator, fast


def _fast_verdict(fast: Any, arguments: Any) -> bool | None:
    """`jsonschema_rs`' verdict on the arguments: True valid, False not (then `jsonschema` says
    where), None when it cannot tell (no compiled schema, a value it cannot represent)."""
    if fast is None:
        return None
    try:
        return bool(fast.is_valid(arguments))
    except (ValueError, TypeError, OverflowError):  # a value it cannot represent: jsonschema decides
        return None


def _fast_path(fast: Any, arguments: Any) -> str:
    """Where `jsonschema_rs` finds the first error (a path of names, never the value)."""
    first = next(iter(fast.iter_errors(arguments)), None)
    return _path(first.instance_path) if first is not None else ""


def _path(parts: Any) -> str:
    return ".".join(str(p) for p in parts)


def _message(keyword: object, expected: Any) -> str:
    """What the schema wanted, without echoing the value given (it may be a secret)."""
    if keyword == "type":
        return f"must be of type {expected}"
    if keyword == "required":
        return f"missing required property (required: {', '.join(map(str, expected))})"
    if keyword == "enum":
        return "is not one of the allowed values"
    if keyword == "additionalProperties":
        return "has properties the schema does not declare"
    return f"fails the schema's {keyword!s} rule"


def _too_long(value: Any, limit: int, where: str) -> str | None:
    """The path of the first string longer than `limit`, or None."""
    if isinstance(value, str):
        return where if len(value) > limit else None
    if isinstance(value, dict):
        for key, inner in value.items():
            found = _too_long(inner, limit, f"{where}.{key}" if where else str(key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            found = _too_long(inner, limit, f"{where}.{index}" if where else str(index))
            if found is not None:
                return found
    return None

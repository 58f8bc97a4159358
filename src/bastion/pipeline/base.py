"""The one interface every pipeline stage implements, and what a stage decides.

A stage sees a `CallContext` (who calls which item with what, the settings that apply to this
item) and returns a `Decision` for each phase:

    allow                   nothing to change
    modify(params=...)      forward these params instead (request phase)
    modify(result=...)      answer with this result instead: in the response phase in place of
                            the origin's; in the request phase without forwarding at all (the
                            approval stage asking a 2026-07-28 client its question)
    deny(error)             refuse the call with this error (its class gives the HTTP status
                            and JSON-RPC code); nothing after this stage runs

Every decision is kept in `CallContext.trail` with the stage's name and reason, and reaches
the call's audit record. Reasons and details never hold the values a stage matched.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bastion.errors import BastionError

__all__ = [
    "ALLOW",
    "Action",
    "Asker",
    "CallContext",
    "Decision",
    "Item",
    "Phase",
    "Stage",
    "StageBase",
]

Phase = Literal["request", "response"]
Action = Literal["allow", "modify", "deny", "alert"]
# Sends a request to the client (handshake era: `elicitation/create`) and returns its JSON-RPC reply.
Asker = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    reason: str = ""
    params: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    error: BastionError | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)  # small and secret-free: counts, detector names

    @classmethod
    def modify(
        cls,
        reason: str,
        *,
        params: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> Decision:
        return cls("modify", reason, params=params, result=result, detail=detail or {})

    @classmethod
    def deny(cls, error: BastionError, detail: Mapping[str, Any] | None = None) -> Decision:
        return cls("deny", error.message, error=error, detail=detail or {})

    @classmethod
    def alert(cls, reason: str, detail: Mapping[str, Any] | None = None) -> Decision:
        """Allowed, but worth a line in the trail (a DLP finding in `alert` mode, a flagged result)."""
        return cls("alert", reason, detail=detail or {})


ALLOW = Decision("allow")


@dataclass(frozen=True, slots=True)
class Item:
    """The item a call reaches, as the pipeline needs it."""

    kind: str  # tool | resource | resource_template | prompt
    exposed_name: str  # what the client calls it
    upstream_name: str  # what the origin calls it
    origin: str  # the origin's name
    definition: Mapping[str, Any]  # the pinned definition, as clients see it


@dataclass(slots=True)
class CallContext:
    """One forwarded call on its way through the pipeline."""

    method: str  # tools/call | resources/read | prompts/get | completion/complete
    item: Item
    params: dict[str, Any]  # what will be forwarded (stages may replace it)
    principal_id: str
    principal_name: str
    tenant_id: str
    server: str  # virtual server slug
    settings: Mapping[str, Any]  # stage name → its merged settings for this item (`bastion.pipeline.config`)
    modern: bool = False  # 2026-07-28: no session, multi-round-trip input requests
    ask: Asker | None = None  # handshake era: set when the client can be asked (elicitation, event stream)
    session_id: str | None = None
    client_capabilities: Mapping[str, Any] | None = None
    # Per-call scratch shared between a stage's two phases (the anonymizer's pseudonym table).
    state: dict[str, Any] = field(default_factory=dict)
    trail: list[dict[str, Any]] = field(default_factory=list)

    @property
    def arguments(self) -> dict[str, Any]:
        """The call's arguments (tools/call, prompts/get): {} where the method has none."""
        found = self.params.get("arguments")
        return found if isinstance(found, dict) else {}


class Stage(Protocol):
    """One job around a forwarded call. `name` is what configuration and the audit trail call it."""

    @property
    def name(self) -> str: ...

    async def on_request(self, ctx: CallContext) -> Decision: ...

    async def on_response(self, ctx: CallContext, result: dict[str, Any]) -> Decision: ...


class StageBase:
    """Allows both phases; a stage overrides the phase it acts in."""

    name: str = ""

    async def on_request(self, ctx: CallContext) -> Decision:
        return ALLOW

    async def on_response(self, ctx: CallContext, result: dict[str, Any]) -> Decision:
        return ALLOW

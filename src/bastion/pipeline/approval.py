"""Human approval before a side-effecting call is forwarded, asked through MCP elicitation.

Handshake-era sessions: Bastion sends the client `elicitation/create` on the call's event
stream and waits for the person's answer. 2026-07-28 (no session): Bastion answers the call
with an `InputRequiredResult` asking the same question; the client retries with the answer
and the `requestState` Bastion sealed, which binds the approval to this person, server, item
and these exact arguments for a few minutes, and carries a nonce that is accepted once (kept in
the rate limiter's storage: Redis across replicas), so one approval forwards one call. An origin
that then asks for input of its own gets its state wrapped inside Bastion's, under a new nonce,
so the approval holds across those rounds.

Only an explicit accept with `approve: true` approves. A decline, a cancel, a timeout, a
malformed answer or a client that cannot elicit is a denial.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
import unicodedata
from collections import OrderedDict
from typing import Any

import anyio
import mcp_types as mt
import orjson
from limits import RateLimitItemPerMinute

from bastion.audit.chain import digest_arguments
from bastion.errors import ApprovalRequired, UpstreamRejected
from bastion.pipeline.base import ALLOW, CallContext, Decision, StageBase
from bastion.pipeline.config import ApprovalSettings
from bastion.pipeline.windows import LimiterStorage, limiter_storage, spend

__all__ = ["INPUT_KEY", "Approval", "needs_approval"]

_MAX_SHOWN_ARGUMENTS = 40
_MAX_SHOWN_VALUE = 200  # characters of one argument's JSON in the question
_SHOWN_TAIL = 60  # of which the value's end, when it is cut
_WHITE_RUN = re.compile(r"[ \t]{8,}")
_HIDDEN = frozenset({"Cf", "Cc", "Co", "Cs", "Zl", "Zp"})  # format (bidi, zero-width), control, private use
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
INPUT_KEY = "bastion.approval"  # Bastion's key among a 2026-07-28 call's inputRequests
_STATE_PREFIX = "bastion1."
_STATE_TTL_SECONDS = 600
# A nonce's single use, remembered twice as long as a state lives: the state's expiry is the issuing
# replica's clock, the memory's the checking one's (or Redis's); remembered only as long, a replica
# whose clock runs behind the issuer's would take the same approval once more after it was forgotten.
_ONCE = RateLimitItemPerMinute(1, 2 * _STATE_TTL_SECONDS // 60)
_REMEMBERED_SESSIONS = 10_000  # once-per-session approvals kept (oldest forgotten first)
_SCHEMA = {
    "type": "object",
    "properties": {"approve": {"type": "boolean", "title": "Approve this call", "default": False}},
    "required": ["approve"],
}


def needs_approval(settings: ApprovalSettings, definition: Any) -> bool:
    if settings.mode == "never":
        return False
    if settings.mode in ("always", "once_per_session"):
        return True
    annotations = (definition.get("annotations") if isinstance(definition, dict) else None) or {}
    # auto: what the origin declares destructive. An unannotated tool is asked for only when an
    # administrator says so (mode always), or every read would need a person.
    return annotations.get("destructiveHint") is True and annotations.get("readOnlyHint") is not True


class Approval(StageBase):
    name = "approval"

    def __init__(self, used: LimiterStorage | None = None) -> None:
        self._key = b""  # until `use_key`: no state verifies (fails closed)
        self._used = (used or limiter_storage(None, "", 1.0)).moving()
        self._approved_sessions: OrderedDict[tuple[str, str, str, str], None] = OrderedDict()

    def use_key(self, key: bytes) -> None:
        """The key that signs 2026-07-28 approval states: the same on every replica."""
        self._key = hashlib.sha256(b"bastion approval state\n" + key).digest()

    async def on_request(self, ctx: CallContext) -> Decision:
        settings: ApprovalSettings = ctx.settings["approval"]
        if ctx.method != "tools/call" or not needs_approval(settings, ctx.item.definition):
            return ALLOW
        remembered = (ctx.session_id or "", ctx.server, ctx.item.origin, ctx.item.upstream_name)
        if settings.mode == "once_per_session" and ctx.session_id and remembered in self._approved_sessions:
            return Decision("allow", "approved earlier in this session")
        if ctx.modern:
            return await self._modern(ctx)
        if ctx.ask is None:
            return _denied(
                ctx,
                "this client cannot be asked (it did not declare elicitation, or does not read event streams)",
                "cannot_elicit",
            )
        try:
            with anyio.fail_after(settings.timeout_seconds):
                reply = await ctx.ask("elicitation/create", self._question(ctx))
        except TimeoutError:
            return _denied(ctx, f"no answer within {settings.timeout_seconds:g} s", "timeout")
        except UpstreamRejected as unanswered:
            if unanswered.code != mt.REQUEST_TIMEOUT:
                raise
            # The session's own limit on any question (`sessions.ASK_TIMEOUT_SECONDS`) came first.
            return _denied(ctx, unanswered.message, "timeout")
        outcome = _outcome(reply.get("result"))
        if outcome != "approved":
            return _denied(ctx, f"the person did not approve it ({outcome})", outcome)
        if settings.mode == "once_per_session" and ctx.session_id:
            self._remember(remembered)
        return Decision("allow", "approved by the person")

    async def on_response(self, ctx: CallContext, result: dict[str, Any]) -> Decision:
        approved = ctx.state.get(self.name)
        if approved is None or result.get("resultType") != "input_required":
            return ALLOW
        # The origin asks for more input: keep the approval inside the state the client sends back.
        wrapped = {**approved, "n": secrets.token_hex(16), "o": result.get("requestState")}
        return Decision.modify("origin state wrapped", result={**result, "requestState": self._seal(wrapped)})

    # --- 2026-07-28 ------------------------------------------------------------------------------
    async def _modern(self, ctx: CallContext) -> Decision:
        state = ctx.params.get("requestState")
        if isinstance(state, str) and state.startswith(_STATE_PREFIX):
            opened = self._open(state)
            if opened is None or opened.get("b") != self._binding(ctx) or opened.get("e", 0) < time.time():
                return _denied(ctx, "the approval state is invalid, expired, or for another call", "bad_state")
            if await spend(self._used, _ONCE, "approval", str(opened.get("n")), counted="approvals") is not None:
                return _denied(ctx, "this approval was already used (each approval forwards one call)", "replayed")
            responses = dict(ctx.params.get("inputResponses") or {})
            answer = responses.pop(INPUT_KEY, None)
            # With "o", the person approved in an earlier round and the origin has asked since.
            outcome = "approved" if "o" in opened else _outcome(answer)
            if outcome != "approved":
                return _denied(ctx, f"the person did not approve it ({outcome})", outcome)
            params = {key: value for key, value in ctx.params.items() if key not in ("inputResponses", "requestState")}
            if responses:
                params["inputResponses"] = responses
            if opened.get("o") is not None:
                params["requestState"] = opened["o"]
            ctx.state[self.name] = {"b": opened["b"], "e": opened["e"]}
            return Decision.modify("approved by the person", params=params)
        if "elicitation" not in (ctx.client_capabilities or {}):
            return _denied(ctx, "this client did not declare elicitation, so it cannot be asked", "cannot_elicit")
        sealed = self._seal(
            {"b": self._binding(ctx), "e": int(time.time()) + _STATE_TTL_SECONDS, "n": secrets.token_hex(16)}
        )
        question = {"method": "elicitation/create", "params": self._question(ctx)}
        result = {"resultType": "input_required", "inputRequests": {INPUT_KEY: question}, "requestState": sealed}
        return Decision.modify("asked the person", result=result)

    def _binding(self, ctx: CallContext) -> str:
        bound = [ctx.principal_id, ctx.server, ctx.item.exposed_name, digest_arguments(ctx.arguments)]
        return hashlib.sha256("\n".join(bound).encode()).hexdigest()

    def _seal(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        return f"{_STATE_PREFIX}{body}.{mac}"

    def _open(self, state: str) -> dict[str, Any] | None:
        body, _, mac = state.removeprefix(_STATE_PREFIX).rpartition(".")
        if not self._key or not (body + mac).isascii():  # compare_digest refuses non-ASCII str
            return None
        expected = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(mac, expected):
            return None
        try:
            opened = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (binascii.Error, orjson.JSONDecodeError, ValueError):
            return None
        return opened if isinstance(opened, dict) else None

    # --- shared -----------------------------------------------------------------------------------
    @staticmethod
    def _question(ctx: CallContext) -> dict[str, Any]:
        """The question a person approves: every argument (nested objects down to their leaves) on a
        line of its own, each value cut alone, so a long value cannot push another out of sight (an
        approval covers all of them); names that are not plain words are quoted, so none can forge
        a line. A call with more arguments than a person can be shown is refused, not asked about."""
        lines = [f"  {path}: {value}" for path, value in _leaves(ctx.arguments)]
        if len(lines) > _MAX_SHOWN_ARGUMENTS:
            raise ApprovalRequired(
                f"{ctx.item.exposed_name!r} needs a person's approval, but its {len(lines)} arguments are more "
                f"than the {_MAX_SHOWN_ARGUMENTS} a person can be shown"
            )
        message = (
            f"{ctx.item.exposed_name} (from {ctx.item.origin}, through {ctx.server}) changes data outside this "
            "conversation. Approve this call?\nArguments:\n" + ("\n".join(lines) if lines else "  (none)")
        )
        return {"mode": "form", "message": message, "requestedSchema": _SCHEMA}

    def _remember(self, key: tuple[str, str, str, str]) -> None:
        self._approved_sessions[key] = None
        while len(self._approved_sessions) > _REMEMBERED_SESSIONS:
            self._approved_sessions.popitem(last=False)


def _leaves(value: Any, path: str = "", depth: int = 0) -> list[tuple[str, str]]:
    """(path, shown value) for each leaf of the arguments, in name order; lists and anything
    deeper than a few levels are shown as one value."""
    if isinstance(value, dict) and value and depth < 4:
        found: list[tuple[str, str]] = []
        for name in sorted(value, key=str):
            found.extend(_leaves(value[name], f"{path}.{_name(name)}" if path else _name(name), depth + 1))
            if len(found) > _MAX_SHOWN_ARGUMENTS:
                break  # refused anyway: the rest is not worth reading
        return found
    if not path and isinstance(value, dict):
        return []
    # Runs of white space told by their length (padding must not push what runs out of sight).
    dumped = orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS).decode()
    shown = _visible(_WHITE_RUN.sub(lambda run: f"⟨{len(run.group(0))} spaces⟩", dumped))
    if len(shown) > _MAX_SHOWN_VALUE:
        # Its end as well as its start: padding a command out past the cut ("ls" + 200 spaces +
        # "; curl … | sh") must not hide what runs.
        head, tail = shown[: _MAX_SHOWN_VALUE - _SHOWN_TAIL], shown[-_SHOWN_TAIL:]
        shown = f"{head} …({len(shown) - _MAX_SHOWN_VALUE} characters not shown)… {tail}"
    return [(path or "(arguments)", shown)]


def _visible(text: str) -> str:
    """Characters that show as nothing, or reorder what follows (zero-width, bidi controls), spelled
    as escapes: what the person reads is what the tool gets."""
    if text.isascii():
        return text
    return "".join(f"\\u{ord(c):04x}" if unicodedata.category(c) in _HIDDEN else c for c in text)


def _name(name: Any) -> str:
    text = str(name)
    return text if _PLAIN_NAME.fullmatch(text) else _visible(orjson.dumps(text[:_MAX_SHOWN_VALUE]).decode())


def _outcome(answer: Any) -> str:
    """approved | declined | cancelled | malformed, from an elicitation result."""
    if not isinstance(answer, dict):
        return "malformed"
    action = answer.get("action")
    if action == "accept":
        content = answer.get("content")
        return "approved" if isinstance(content, dict) and content.get("approve") is True else "declined"
    return {"decline": "declined", "cancel": "cancelled"}.get(str(action), "malformed")


def _denied(ctx: CallContext, why: str, outcome: str) -> Decision:
    return Decision.deny(
        ApprovalRequired(f"{ctx.item.exposed_name!r} needs a person's approval, and was not approved: {why}"),
        detail={"outcome": outcome},
    )

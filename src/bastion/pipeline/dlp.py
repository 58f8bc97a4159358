"""Data loss prevention on arguments and results: the baseline detectors, a tenant's own, and an
action per detector (block, redact, mask, alert, off) for each direction.

Findings are named in the trail by detector and field path only; the matched value is never
written anywhere. Values the anonymizer put in place of the originals are not findings.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bastion.errors import PolicyDenied, UpstreamRejected
from bastion.pipeline.base import ALLOW, CallContext, Decision, StageBase
from bastion.pipeline.config import DlpAction, DlpSettings
from bastion.pipeline.dlp_detectors import BASELINE, Detector, Finding, LinearDetector, find_all, linear_pattern
from bastion.pipeline.injection import strip_hidden
from bastion.pipeline.texts import KEY_SUFFIX, map_strings, splice, strings

__all__ = ["Dlp", "apply"]

_PSEUDONYMS = "anonymize"  # the anonymizer's per-call table in CallContext.state
_NOT_CLIENT_DATA = frozenset({"name", "_meta", "requestState"})


class Dlp(StageBase):
    name = "dlp"

    def __init__(self, plugins: Mapping[str, Detector] | None = None) -> None:
        self._plugins = dict(plugins or {})
        self._detectors: dict[int, tuple[DlpSettings, tuple[Detector, ...]]] = {}

    def detectors(self, settings: DlpSettings) -> tuple[Detector, ...]:
        cached = self._detectors.get(id(settings))
        if cached is not None and cached[0] is settings:
            return cached[1]
        missing = [name for name in settings.plugins if name not in self._plugins]
        if missing:
            # A policy relies on a detector this replica does not have (a typo, a replica without the
            # package): deciding without it would let through what it exists to stop.
            raise PolicyDenied(
                f"data loss prevention: detector plugin(s) {', '.join(missing)} are not installed here; "
                "nothing is decided without them"
            )
        custom = tuple(LinearDetector(c.name, linear_pattern(c.pattern)) for c in settings.custom)
        plugged = tuple(self._plugins[name] for name in settings.plugins)
        built = (*BASELINE, *custom, *plugged)
        if len(self._detectors) > 1024:
            self._detectors.clear()
        self._detectors[id(settings)] = (settings, built)
        return built

    def check_outgoing(self, ctx: CallContext, value: dict[str, Any], label: str) -> tuple[Decision, Any]:
        """`value`, client data about to reach the origin, under the request rules."""
        return self._check(ctx, value, label, outgoing=True)

    def check_incoming(self, ctx: CallContext, value: dict[str, Any], label: str) -> tuple[Decision, Any]:
        """`value`, the origin's words about to reach the client outside a result (its questions to
        a person), under the response rules: a person asked to approve a refund to an address sees
        the address unless the rules redact it."""
        return self._check(ctx, value, label, outgoing=False)

    def _check(self, ctx: CallContext, value: dict[str, Any], label: str, *, outgoing: bool) -> tuple[Decision, Any]:
        settings: DlpSettings = ctx.settings["dlp"]
        if not settings.enabled or not value:
            return ALLOW, value
        rules = settings.request if outgoing else settings.response
        return apply(value, self.detectors(settings), rules, _known(ctx), label, arguments=True)

    async def on_request(self, ctx: CallContext) -> Decision:
        # Everything the origin will read from the client: arguments, a resource's URI, answers to
        # an origin's questions. Not the item's name (the catalog's) nor an opaque request state.
        scanned = {key: value for key, value in ctx.params.items() if key not in _NOT_CLIENT_DATA}
        decision, changed = self.check_outgoing(ctx, scanned, "arguments")
        if decision.action == "modify":
            return Decision.modify(decision.reason, params={**ctx.params, **changed}, detail=decision.detail)
        return decision

    def redacted(self, ctx: CallContext, value: Any, label: str) -> tuple[Decision, Any]:
        """`value` (an origin's error, its notification) with what a detector finds redacted,
        whatever the response action: such messages cannot be withheld like a result, and relayed
        as they came they would carry the secret. A detector set `off` stays off."""
        settings: DlpSettings = ctx.settings["dlp"]
        if not settings.enabled:
            return ALLOW, value
        detectors = self.detectors(settings)
        # Per detector, as the response rules resolve it (a detector named, else "*"): off stays off,
        # every other action redacts. Not "*" alone: `"*": "off"` with one detector on must keep it on.
        actions: dict[str, DlpAction] = {
            "*": "redact",
            **{d.name: "off" if _action(settings.response, d.name) == "off" else "redact" for d in detectors},
        }
        return apply(value, detectors, actions, _known(ctx), label, arguments=True)

    def screen_error(self, ctx: CallContext, error: UpstreamRejected) -> tuple[Decision, UpstreamRejected]:
        """An origin's own JSON-RPC error as the client may read it (see `redacted`)."""
        value = {"message": error.message, "data": error.raw_data}
        decision, changed = self.redacted(ctx, value, "origin error")
        if decision.action == "deny":  # found where it cannot be redacted (a key of its data)
            return decision, UpstreamRejected(error.code, "the origin's error was withheld: data loss prevention")
        if changed is value:
            return decision, error
        return decision, UpstreamRejected(error.code, str(changed["message"]), data=changed["data"])

    async def on_response(self, ctx: CallContext, result: dict[str, Any]) -> Decision:
        settings: DlpSettings = ctx.settings["dlp"]
        if not settings.enabled:
            return ALLOW
        decision, changed = apply(result, self.detectors(settings), settings.response, _known(ctx), "result")
        if decision.action == "modify":
            return Decision.modify(decision.reason, result=changed, detail=decision.detail)
        return decision


def apply(
    value: Any,
    detectors: Sequence[Detector],
    actions: Mapping[str, DlpAction],
    known: frozenset[str],
    label: str,
    *,
    arguments: bool = False,
) -> tuple[Decision, Any]:
    """The decision for `value` and, when something is redacted or masked, the changed copy."""
    found: Counter[str] = Counter()
    blocked: list[tuple[str, str]] = []
    acted: set[str] = set()
    for where, text in strings(value, arguments=arguments):
        key = where.endswith(KEY_SUFFIX)
        findings = _findings(text, detectors, actions, known, cached=key)
        for finding in findings:
            action = _action(actions, finding.detector)
            if action in ("redact", "mask") and key:
                action = "block"  # a key is never rewritten (two could become one): what needs it is refused
            found[finding.detector] += 1
            acted.add(action)
            if action == "block":
                blocked.append((finding.detector, where))
        if not text.isascii():
            for detector in _hidden_findings(text, findings, detectors, actions, known):
                action = _action(actions, detector)
                # Found only once characters that show as nothing are taken out (a zero-width space
                # inside a key): no span of the text as sent is the value, so what would cut it out
                # refuses it instead.
                action = "block" if action in ("redact", "mask") else action
                found[detector] += 1
                acted.add(action)
                if action == "block":
                    blocked.append((detector, where))
    if not found:
        return ALLOW, value
    detail = {"findings": dict(found)}
    if blocked:
        detector, where = blocked[0]
        found_in = "the arguments contain" if arguments else "the result contains"
        outcome = "the call was not forwarded" if arguments else "it was withheld"
        error = PolicyDenied(
            f"data loss prevention: {found_in} a {detector.replace('_', ' ')} (at {where or label}); {outcome}"
        )
        return Decision.deny(error, detail=detail), value
    if acted & {"redact", "mask"}:

        def change(text: str) -> str:
            changes = []
            for finding in _findings(text, detectors, actions, known):  # sorted, disjoint (`find_all`)
                replacement = _replacement(_action(actions, finding.detector), finding)
                if replacement is not None:
                    changes.append((finding.start, finding.end, replacement))
            rewritten = splice(text, changes)
            return rewritten if rewritten != text else text

        summary = ", ".join(f"{n} {d}" for d, n in sorted(found.items()))
        return Decision.modify(f"{label}: {summary} redacted or masked", detail=detail), map_strings(
            value, change, arguments=arguments
        )
    return Decision.alert(f"{label}: " + ", ".join(f"{n} {d}" for d, n in sorted(found.items())), detail), value


# Characters read as their plain look-alike, one for one: no-break spaces, fullwidth ASCII.
_SAME_LENGTH = {
    0x00A0: 0x20, 0x2007: 0x20, 0x202F: 0x20,
    **{code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)},  # U+FF01..U+FF5E -> "!".."~"
}  # fmt: skip


def _hidden_findings(
    text: str,
    seen: Sequence[Finding],
    detectors: Sequence[Detector],
    actions: Mapping[str, DlpAction],
    known: frozenset[str],
) -> list[str]:
    """The detectors that find something in `text` only once the characters that show as nothing
    (zero-width, bidi controls) are taken out: no span of `text` is then the value, so what would
    cut it out refuses it instead (`apply`). Counted once per value more than `text` itself shows: a
    visible key beside a hidden one leaves the hidden one found. Non-ASCII text only."""
    folded = strip_hidden(text)
    if folded == text:
        return []
    visible = Counter(finding.detector for finding in seen)
    hidden: list[str] = []
    for finding in _findings(folded, detectors, actions, known):
        if visible[finding.detector]:
            visible[finding.detector] -= 1
        else:
            hidden.append(finding.detector)
    return hidden


def _findings(
    text: str,
    detectors: Sequence[Detector],
    actions: Mapping[str, DlpAction],
    known: frozenset[str],
    *,
    cached: bool = False,
) -> list[Finding]:
    # Non-ASCII text is read with lookalikes made plain, one character for one (no-break spaces as
    # spaces, fullwidth letters and digits as ASCII): the offsets stay those of `text`, so what is
    # found there is redacted there.
    scan = text if text.isascii() else text.translate(_SAME_LENGTH)
    found = _found_in_key(scan, detectors) if cached else find_all(scan, detectors)
    return [f for f in found if _action(actions, f.detector) != "off" and f.value not in known]


# Keys repeat from call to call (`order_id`, `text`, a result's `result`), values rarely do: what the
# detectors find in a key is kept, per detector set. Reading every key anew cost each call about a
# tenth more CPU (`bench.compare`). The set itself is kept in the entry and compared by identity, so
# an id reused by another set after this one is gone never answers for it.
_KEY_FINDINGS: dict[tuple[int, str], tuple[Sequence[Detector], list[Finding]]] = {}
_KEY_FINDINGS_MAX = 4096


def _found_in_key(text: str, detectors: Sequence[Detector]) -> list[Finding]:
    if len(text) > 128:  # a long key is no identifier: read it like a value
        return find_all(text, detectors)
    entry = _KEY_FINDINGS.get((id(detectors), text))
    if entry is not None and entry[0] is detectors:
        return entry[1]
    found = find_all(text, detectors)
    if len(_KEY_FINDINGS) >= _KEY_FINDINGS_MAX:
        _KEY_FINDINGS.clear()
    _KEY_FINDINGS[(id(detectors), text)] = (detectors, found)
    return found


def _action(actions: Mapping[str, DlpAction], detector: str) -> DlpAction:
    return actions.get(detector) or actions.get("*") or "alert"


def _replacement(action: DlpAction, finding: Finding) -> str | None:
    if action == "redact":
        return f"[REDACTED:{finding.detector}]"
    if action == "mask":
        visible = finding.value[-4:] if len(finding.value) > 8 else ""
        return "*" * max(4, len(finding.value) - len(visible)) + visible
    return None


def _known(ctx: CallContext) -> frozenset[str]:
    table: Iterable[str] = (ctx.state.get(_PSEUDONYMS) or {}).keys()
    return frozenset(table)

"""Reversible pseudonymization: the origin sees stand-ins for personal data, the client sees its
own values again in the result.

Each distinct value found in the arguments (by the detectors the scope names) gets a stand-in
that is unique to this call and keeps the value's shape where origins check it (an email stays
an email). The table lives only in the call's context: nothing is stored, and the same value
gets a different stand-in in the next call, so an origin cannot link calls through it.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from bastion.pipeline.base import ALLOW, CallContext, Decision, StageBase
from bastion.pipeline.config import AnonymizeSettings
from bastion.pipeline.dlp_detectors import BASELINE, Detector, find_all
from bastion.pipeline.texts import map_strings, splice

__all__ = ["Anonymize"]

_BY_NAME = {d.name: d for d in BASELINE}


class Anonymize(StageBase):
    name = "anonymize"

    async def on_request(self, ctx: CallContext) -> Decision:
        settings: AnonymizeSettings = ctx.settings["anonymize"]
        if not settings.enabled or not ctx.arguments:
            return ALLOW
        detectors = tuple(_BY_NAME[n] for n in settings.detectors if n in _BY_NAME)
        table: dict[str, str] = {}  # stand-in → original
        given: dict[str, str] = {}  # original → stand-in
        salt = secrets.token_hex(3)

        def change(text: str) -> str:
            return _replace(text, detectors, given, table, salt)

        arguments = map_strings(ctx.arguments, change, arguments=True)
        if not table:
            return ALLOW
        ctx.state[self.name] = table
        kinds = sorted({stand_in.split("_", 2)[1] for stand_in in table if stand_in.startswith("anon_")})
        return Decision.modify(
            f"{len(table)} value(s) replaced by pseudonyms",
            params={**ctx.params, "arguments": arguments},
            detail={"pseudonyms": len(table), "kinds": kinds},
        )

    async def on_response(self, ctx: CallContext, result: dict[str, Any]) -> Decision:
        table: dict[str, str] | None = ctx.state.get(self.name)
        if not table:
            return ALLOW

        # One pass over each text for every stand-in at once (one `replace` per stand-in took time
        # quadratic in their number); longest first: "anon_phone_x1" is a prefix of "anon_phone_x11".
        stand_ins = re.compile("|".join(re.escape(s) for s in sorted(table, key=len, reverse=True)))

        def original(match: re.Match[str]) -> str:
            # Not inside a URL: an origin could put the stand-in in a link (an image, a resource
            # link) that the client then fetches, carrying the original to wherever it points.
            return match.group(0) if _in_url(match.string, match.start()) else table[match.group(0)]

        def restore(text: str) -> str:
            if "anon_" not in text:
                return text
            restored = stand_ins.sub(original, text)
            return restored if restored != text else text

        changed = map_strings(result, restore)
        if changed is result:
            return ALLOW
        return Decision.modify("pseudonyms restored in the result", result=changed)


_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:(?://)?[^\s\"'<>()\[\]]*")


def _in_url(text: str, at: int) -> bool:
    """Whether position `at` of `text` lies in a URL (a scheme, then no whitespace, quotes or
    brackets up to it: `https://x/?q=…`, `mailto:…`, a `resource_link`'s `uri`)."""
    start = max(text.rfind(" ", 0, at), text.rfind("\n", 0, at), text.rfind("(", 0, at), text.rfind('"', 0, at)) + 1
    match = _URL.match(text, start)
    return match is not None and match.end() >= at and ":" in text[start:at]


def _replace(
    text: str, detectors: tuple[Detector, ...], given: dict[str, str], table: dict[str, str], salt: str
) -> str:
    findings = find_all(text, detectors)
    if not findings:
        return text
    changes = []
    for finding in findings:  # sorted, disjoint (`find_all`)
        stand_in = given.get(finding.value)
        if stand_in is None:
            stand_in = _stand_in(finding.detector, len(given) + 1, salt)
            given[finding.value] = stand_in
            table[stand_in] = finding.value
        changes.append((finding.start, finding.end, stand_in))
    return splice(text, changes)


def _stand_in(detector: str, number: int, salt: str) -> str:
    tag = detector.replace("_", "")
    if detector == "email":
        return f"anon_{tag}_{salt}{number}@anonymized.invalid"  # RFC 2606: .invalid never resolves
    return f"anon_{tag}_{salt}{number}"

"""A third-party package's pipeline stage and DLP detector, installed through entry points."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from bastion.pipeline.base import ALLOW, CallContext, Decision, StageBase
from bastion.pipeline.dlp_detectors import Finding


class Watermark(StageBase):
    """Appends a line to every text result; settings: {"text": "..."}."""

    name = "watermark"

    async def on_response(self, ctx: CallContext, result: dict[str, Any]) -> Decision:
        text = ctx.settings.get(self.name, {}).get("text")
        if not text:
            return ALLOW
        content = [
            {**b, "text": b["text"] + "\n" + text} if b.get("type") == "text" else b for b in result.get("content", [])
        ]
        return Decision.modify("watermarked", result={**result, "content": content})


class EmployeeId:
    """ACME employee ids, E- and six digits."""

    name = "employee_id"
    _pattern = re.compile(r"\bE-\d{6}\b")

    def find(self, text: str) -> Iterator[Finding]:
        for match in self._pattern.finditer(text):
            yield Finding(self.name, match.start(), match.end(), match.group())

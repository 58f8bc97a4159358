"""Charts as plain SVG geometry, computed here and drawn by the templates.

No chart library and no script: the CSP allows neither inline script nor a
third-party source, and a few rectangles and a polyline are all a time series needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Chart", "bars", "line"]

WIDTH = 600
HEIGHT = 160
_LEFT = 36  # room for the axis labels
_BOTTOM = 18


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    tone: str  # the CSS class: "", "deny" or "error"
    title: str


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    peak: float
    labels: list[tuple[float, str]]  # x, text under the axis
    rects: list[Rect] = field(default_factory=list)
    points: str = ""  # a polyline's "x,y x,y ..."
    unit: str = ""

    @property
    def empty(self) -> bool:
        return self.peak == 0


def _labels(names: Sequence[str], slot: float, every: int) -> list[tuple[float, str]]:
    return [(_LEFT + slot * i + slot / 2, name) for i, name in enumerate(names) if i % every == 0]


def bars(names: Sequence[str], stacks: Sequence[Sequence[tuple[str, int]]], *, unit: str = "") -> Chart:
    """One stacked bar per slot: `stacks[i]` is [(tone, value), ...] from the bottom up."""
    peak = max((sum(v for _, v in stack) for stack in stacks), default=0)
    slot = (WIDTH - _LEFT) / max(1, len(stacks))
    plot = HEIGHT - _BOTTOM
    rects = []
    for i, (name, stack) in enumerate(zip(names, stacks, strict=True)):
        base = float(plot)
        for tone, value in stack:
            if value <= 0:
                continue
            height = plot * value / peak
            base -= height
            rects.append(Rect(_LEFT + slot * i + 1, base, max(1.0, slot - 2), height, tone, f"{name}: {value} {tone}"))
    return Chart(WIDTH, HEIGHT, peak, _labels(names, slot, max(1, len(names) // 6)), rects, unit=unit)


def line(names: Sequence[str], values: Sequence[float], *, unit: str = "") -> Chart:
    """A polyline through the slots' values (slots without data sit on the axis)."""
    peak = max(values, default=0.0)
    slot = (WIDTH - _LEFT) / max(1, len(values))
    plot = HEIGHT - _BOTTOM
    points = " ".join(
        f"{_LEFT + slot * i + slot / 2:.1f},{plot - (plot * v / peak if peak else 0):.1f}" for i, v in enumerate(values)
    )
    return Chart(WIDTH, HEIGHT, peak, _labels(names, slot, max(1, len(names) // 6)), points=points, unit=unit)

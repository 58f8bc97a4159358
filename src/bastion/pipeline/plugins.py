"""Custom stages and DLP detectors from Python entry points, with the built-in ones' interface.

    [project.entry-points."bastion.pipeline_stages"]
    watermark = "acme_bastion.stages:Watermark"        # a class: Watermark() is a Stage

    [project.entry-points."bastion.dlp_detectors"]
    employee_id = "acme_bastion.detectors:EmployeeId"   # a class: EmployeeId() is a Detector

A custom stage runs after the built-in request stages and before the built-in response stages;
its settings are the policies stored under its name (a plain dict, which it validates itself).
A plugin that fails to load stops the start: a policy that names it must not silently vanish.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import cast

from bastion.pipeline.base import Stage
from bastion.pipeline.dlp_detectors import Detector

__all__ = ["DETECTOR_GROUP", "STAGE_GROUP", "PluginError", "load_detectors", "load_stages"]

STAGE_GROUP = "bastion.pipeline_stages"
DETECTOR_GROUP = "bastion.dlp_detectors"


class PluginError(RuntimeError):
    """An entry point that does not load, or does not build what its group promises."""


def load_stages(reserved: frozenset[str]) -> dict[str, Stage]:
    stages: dict[str, Stage] = {}
    for point in entry_points(group=STAGE_GROUP):
        stage = cast(Stage, _build(point.name, point.load, STAGE_GROUP))
        name = getattr(stage, "name", None)
        if (
            name != point.name
            or not callable(getattr(stage, "on_request", None))
            or not callable(getattr(stage, "on_response", None))
        ):
            raise PluginError(f"stage plugin {point.name!r} must have name {point.name!r}, on_request and on_response")
        if name in reserved:
            raise PluginError(f"stage plugin {point.name!r} takes the name of a built-in stage")
        stages[name] = stage
    return stages


def load_detectors() -> Mapping[str, Detector]:
    detectors: dict[str, Detector] = {}
    for point in entry_points(group=DETECTOR_GROUP):
        detector = cast(Detector, _build(point.name, point.load, DETECTOR_GROUP))
        if getattr(detector, "name", None) != point.name or not callable(getattr(detector, "find", None)):
            raise PluginError(f"detector plugin {point.name!r} must have name {point.name!r} and find(text)")
        detectors[point.name] = detector
    return detectors


def _build(name: str, load: object, group: str) -> object:
    try:
        factory = load()  # type: ignore[operator]  # EntryPoint.load: an object of the plugin's choosing
        return factory()
    except Exception as exc:  # a plugin's own failure, any type: reported with its name, start refused
        raise PluginError(f"{group} plugin {name!r} failed to load: {type(exc).__name__}: {exc}") from exc

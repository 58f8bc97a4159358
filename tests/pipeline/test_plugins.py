"""Custom stages and detectors load from Python entry points and act like built-in ones.

`plugin_dist/` is an installed distribution as site-packages holds one (a dist-info folder with
its entry points): put on sys.path, `importlib.metadata` finds it as it finds any package.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.errors import PolicyDenied
from bastion.pipeline.chain import BUILTIN, Pipeline
from bastion.pipeline.plugins import PluginError, load_detectors, load_stages
from bastion.pipeline.rate_limit import RateLimit
from bastion.pipeline.windows import limiter_storage
from tests.pipeline.stages import context

pytestmark = pytest.mark.anyio

DIST = Path(__file__).parent / "plugin_dist"


@pytest.fixture
def installed() -> Iterator[None]:
    sys.path.insert(0, str(DIST))
    try:
        yield
    finally:
        sys.path.remove(str(DIST))
        sys.modules.pop("acme_stages", None)


async def test_an_installed_stage_runs_after_the_built_in_request_stages_with_its_own_settings(installed: None) -> None:
    stages = load_stages(BUILTIN)
    assert set(stages) == {"watermark"}
    pipeline = Pipeline(RateLimit(limiter_storage(None, "t", 1.0)), plugins=stages, detectors=load_detectors())
    ctx = context(policies={"watermark": {"text": "-- via ACME"}})
    assert await pipeline.request(ctx) is None
    result = await pipeline.response(ctx, {"content": [{"type": "text", "text": "ok"}], "isError": False})
    assert result["content"][0]["text"] == "ok\n-- via ACME"
    stages_seen = [(d["stage"], d["phase"]) for d in ctx.trail]
    assert stages_seen.index(("dlp", "request")) < stages_seen.index(("watermark", "request"))
    assert stages_seen.index(("watermark", "response")) < stages_seen.index(("inspect", "response"))


async def test_an_installed_detector_is_used_where_a_policy_names_it(installed: None) -> None:
    pipeline = Pipeline(RateLimit(limiter_storage(None, "t", 1.0)), detectors=load_detectors())
    policies = {"dlp": {"plugins": ["employee_id"], "request": {"employee_id": "block", "*": "alert"}}}
    ctx = context({"order_id": "A-1", "note": "for E-123456"}, policies=policies)
    with pytest.raises(Exception, match="employee id"):
        await pipeline.request(ctx)


async def test_a_policy_naming_a_detector_this_replica_lacks_refuses_the_call() -> None:
    """A typo, or a replica without the package: deciding without the detector would let through what
    it is there to stop, so the call is refused, saying which detector is missing."""
    pipeline = Pipeline(RateLimit(limiter_storage(None, "t", 1.0)), detectors={})
    policies = {"dlp": {"plugins": ["employe_id"], "request": {"employe_id": "block"}}}
    ctx = context({"order_id": "A-1", "note": "for E-123456"}, policies=policies)
    with pytest.raises(PolicyDenied, match="employe_id are not installed here"):
        await pipeline.request(ctx)


def test_a_policy_for_a_stage_this_replica_has_not_installed_refuses_the_call() -> None:
    """The stage's policy would otherwise be merged and then run by nobody: the call allowed on this
    replica and refused on one that has the package."""
    pipeline = Pipeline(RateLimit(limiter_storage(None, "t", 1.0)), detectors={})
    policies = {"default": {"global": {"watermark": {"text": "-- via ACME"}}}}
    with pytest.raises(PolicyDenied, match="name stage\\(s\\) watermark, not installed here"):
        pipeline.settings(policies, "default", "srv", "shop", "refund")
    assert pipeline.settings({"default": {}}, "default", "srv", "shop", "refund")["dlp"].enabled


def test_a_plugin_that_takes_a_built_in_name_stops_the_start(installed: None) -> None:
    with pytest.raises(PluginError, match="built-in"):
        load_stages(frozenset({"watermark"}))

"""The console's dashboard: traffic, denials by reason, upstream errors and latency, top tools and callers.

Built from the audit trail (`bastion.store.repos.audit_stats`), so it shows
exactly what the trail records, for the viewer's tenant, and needs audit:read.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from bastion.console.audit import user_names
from bastion.console.charts import bars, line
from bastion.console.render import NAVIGATION, page
from bastion.console.route import ConsoleRoute
from bastion.console.viewer import CurrentViewer
from bastion.store.repos.audit_stats import overview

__all__ = ["router"]

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)

_WINDOWS = {"1h": 3600, "24h": 86_400, "7d": 7 * 86_400}
_LABELS = {"1h": "%H:%M", "24h": "%H:%M", "7d": "%a %d"}


@router.get("")
async def dashboard(request: Request, viewer: CurrentViewer, window: Literal["1h", "24h", "7d"] = "24h") -> Response:
    if not viewer.may("audit:read"):
        # The first section this person's roles open, else their own account page.
        for _label, path, action in NAVIGATION[1:]:
            if action is not None and viewer.may(action):
                return RedirectResponse(path, status_code=303)
        return RedirectResponse("/admin/account", status_code=303)
    actor = viewer.actor("audit:read")
    until_us = time.time_ns() // 1000 + 1
    stats = await overview(
        request.app.state.services.db, actor.scope, since_us=until_us - _WINDOWS[window] * 1_000_000, until_us=until_us
    )
    names = [datetime.fromtimestamp(b.start_us / 1e6, UTC).strftime(_LABELS[window]) for b in stats.buckets]
    return page(
        request,
        "dashboard.html",
        viewer=viewer,
        window=window,
        windows=list(_WINDOWS),
        stats=stats,
        names=await user_names(request, viewer),
        traffic=bars(names, [[("", b.allowed), ("deny", b.denied), ("error", b.errors)] for b in stats.buckets]),
        upstream_errors=bars(names, [[("error", b.upstream_errors)] for b in stats.buckets]),
        latency=line(names, [b.upstream_latency_ms for b in stats.buckets], unit="ms"),
    )

"""Console pages: servers (being written)."""

from __future__ import annotations

from fastapi import APIRouter

from bastion.console.route import ConsoleRoute

__all__ = ["router"]

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)

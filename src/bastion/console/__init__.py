"""The admin console at /admin (`BASTION_ADMIN_UI=true`): server-rendered pages over the control plane.

Every page acts through the same control-plane objects as the admin API, as the
signed-in person, with the same permission names; forms carry CSRF tokens and
the pages a strict CSP (scripts and styles from /admin/static only).
"""

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from bastion.console import account, audit, clients, dashboard, origins, people, policies, servers, signin, tokens

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
for module in (signin, dashboard, origins, servers, people, tokens, clients, policies, audit, account):
    router.include_router(module.router)

_STATIC = Path(__file__).parent / "static"
_TYPES = {"console.css": "text/css", "console.js": "text/javascript", "favicon.svg": "image/svg+xml"}


@router.get("/admin/static/{name}")
async def static(name: str) -> FileResponse:
    if name not in _TYPES:  # a fixed list: no path from the request reaches the file system
        raise HTTPException(status_code=404)
    return FileResponse(_STATIC / name, media_type=_TYPES[name], headers={"cache-control": "max-age=3600"})

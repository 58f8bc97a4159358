"""The identity plane's HTTP surface: OAuth endpoints, well-known metadata, sign-in and consent pages."""

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from bastion.web.authserver import AuthServer
from bastion.web.connect import router as _connect
from bastion.web.federation import router as _federation
from bastion.web.oauth_api import router as _oauth_api
from bastion.web.session_api import router as _session_api
from bastion.web.signin import router as _signin

__all__ = ["AuthServer", "router"]

router = APIRouter(include_in_schema=False)
router.include_router(_oauth_api)
router.include_router(_signin)
router.include_router(_federation)
router.include_router(_session_api)
router.include_router(_connect)

_STYLESHEET = Path(__file__).parent / "static" / "bastion.css"


@router.get("/static/bastion.css")
async def stylesheet() -> FileResponse:
    return FileResponse(_STYLESHEET, media_type="text/css", headers={"cache-control": "max-age=3600"})

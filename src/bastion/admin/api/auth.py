"""POST /api/login: an administrator's password for a one-hour admin token (locks out like /oauth/login)."""

from fastapi import APIRouter, Request

from bastion.admin.deps import ControlDep
from bastion.admin.schemas import LoginIn, TokenCreated
from bastion.web.deps import attempt, limit

router = APIRouter(tags=["auth"])


@router.post("/login", response_model=TokenCreated)
async def login(data: LoginIn, control: ControlDep, request: Request) -> TokenCreated:
    await limit(request, "sign-in")
    return await control.login(attempt(request, data.username, data.password))

"""POST /api/login: an administrator's password for a one-hour admin token (locks out like /oauth/login)."""

from fastapi import APIRouter, Request

from bastion.admin.deps import ControlDep
from bastion.admin.schemas import LoginIn, TokenCreated
from bastion.logins import Attempt
from bastion.web.ratelimit import RouteLimits

router = APIRouter(tags=["auth"])


@router.post("/login", response_model=TokenCreated)
async def login(data: LoginIn, control: ControlDep, request: Request) -> TokenCreated:
    attempt = Attempt(
        username=data.username,
        password=data.password,
        ip=request.client.host if request.client else "",
        user_agent=request.headers.get("user-agent", ""),
    )
    limits: RouteLimits = request.app.state.limits
    await limits.hit("sign-in", attempt.ip)
    return await control.login(attempt)

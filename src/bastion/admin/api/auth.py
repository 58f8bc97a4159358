"""POST /api/login: an administrator's password for a one-hour admin token."""

from fastapi import APIRouter

from bastion.admin.deps import ControlDep
from bastion.admin.schemas import LoginIn, TokenCreated

router = APIRouter(tags=["auth"])


@router.post("/login", response_model=TokenCreated)
async def login(data: LoginIn, control: ControlDep) -> TokenCreated:
    return await control.login(data.username, data.password)

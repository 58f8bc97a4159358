"""Local users: create under the password policy, list (never a hash), unlock after a lockout."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from bastion.admin.deps import AdminPrincipal
from bastion.admin.schemas import UserIn, UserOut
from bastion.admin.users import Users

router = APIRouter(prefix="/users", tags=["users"])


def _users(request: Request) -> Users:
    users: Users = request.app.state.users
    return users


UsersDep = Annotated[Users, Depends(_users)]


@router.post("", status_code=201, response_model=UserOut)
async def create_user(data: UserIn, users: UsersDep, _: AdminPrincipal) -> UserOut:
    return await users.create(data)


@router.get("", response_model=list[UserOut])
async def list_users(users: UsersDep, _: AdminPrincipal) -> list[UserOut]:
    return await users.list()


@router.post("/{user_id}/unlock", response_model=UserOut)
async def unlock_user(user_id: str, users: UsersDep, _: AdminPrincipal) -> UserOut:
    return await users.unlock(user_id)

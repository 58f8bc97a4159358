"""Users of the tenant: create under the password policy, list (never a hash), roles and teams, unlock."""

from fastapi import APIRouter

from bastion.admin.deps import UsersDep, UsersManage, UsersRead
from bastion.admin.schemas import UserIn, UserOut, UserPatch

router = APIRouter(prefix="/users", tags=["users"])


@router.post("", status_code=201, response_model=UserOut)
async def create_user(data: UserIn, users: UsersDep, actor: UsersManage) -> UserOut:
    return await users.create(actor, data)


@router.get("", response_model=list[UserOut])
async def list_users(users: UsersDep, actor: UsersRead) -> list[UserOut]:
    return await users.list(actor)


@router.patch("/{user_id}", response_model=UserOut)
async def update_user(user_id: str, data: UserPatch, users: UsersDep, actor: UsersManage) -> UserOut:
    return await users.update(actor, user_id, data)


@router.post("/{user_id}/unlock", response_model=UserOut)
async def unlock_user(user_id: str, users: UsersDep, actor: UsersManage) -> UserOut:
    return await users.unlock(actor, user_id)

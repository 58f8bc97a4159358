"""API tokens: create (the secret is in this one response), list, revoke."""

from fastapi import APIRouter

from bastion.admin.deps import AdminPrincipal, ControlDep
from bastion.admin.schemas import TokenCreated, TokenIn, TokenOut

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenCreated)
async def create_token(data: TokenIn, control: ControlDep, admin: AdminPrincipal) -> TokenCreated:
    return await control.create_token(admin.username, data)


@router.get("", response_model=list[TokenOut])
async def list_tokens(control: ControlDep, _: AdminPrincipal) -> list[TokenOut]:
    return await control.list_tokens()


@router.post("/{token_id}/revoke", response_model=TokenOut)
async def revoke_token(token_id: str, control: ControlDep, _: AdminPrincipal) -> TokenOut:
    return await control.revoke_token(token_id)

"""API tokens: create (the secret is in this one response), list, revoke.

Anyone with tokens:create manages their own; tokens:manage reaches every token of the tenant.
"""

from fastapi import APIRouter

from bastion.admin.deps import ControlDep, TokensCreate
from bastion.admin.schemas import TokenCreated, TokenIn, TokenOut

router = APIRouter(prefix="/tokens", tags=["tokens"])


@router.post("", status_code=201, response_model=TokenCreated)
async def create_token(data: TokenIn, control: ControlDep, actor: TokensCreate) -> TokenCreated:
    return await control.create_token(actor, data)


@router.get("", response_model=list[TokenOut])
async def list_tokens(control: ControlDep, actor: TokensCreate) -> list[TokenOut]:
    return await control.list_tokens(actor)


@router.post("/{token_id}/revoke", response_model=TokenOut)
async def revoke_token(token_id: str, control: ControlDep, actor: TokensCreate) -> TokenOut:
    return await control.revoke_token(actor, token_id)

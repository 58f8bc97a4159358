"""Origins (connectors): register (a connector request), review, list, show, refresh, delete."""

from typing import Literal

from fastapi import APIRouter, Response

from bastion.admin.deps import ConnectorsApprove, ControlDep, OriginsManage, OriginsRead
from bastion.admin.schemas import ItemApprovalIn, OriginAuthIn, OriginIn, OriginOut, ReviewIn

router = APIRouter(prefix="/origins", tags=["origins"])


@router.post("", status_code=201, response_model=OriginOut)
async def create_origin(data: OriginIn, control: ControlDep, actor: OriginsManage) -> OriginOut:
    return await control.create_origin(actor, data)


@router.get("", response_model=list[OriginOut])
async def list_origins(
    control: ControlDep, actor: OriginsRead, status: Literal["pending", "approved", "rejected"] | None = None
) -> list[OriginOut]:
    return await control.list_origins(actor, status)


@router.get("/{origin_id}", response_model=OriginOut)
async def show_origin(origin_id: str, control: ControlDep, actor: OriginsRead) -> OriginOut:
    return await control.get_origin(actor, origin_id)


@router.post("/{origin_id}/review", response_model=OriginOut)
async def review_origin(origin_id: str, data: ReviewIn, control: ControlDep, actor: ConnectorsApprove) -> OriginOut:
    return await control.review_origin(actor, origin_id, data)


@router.post("/{origin_id}/items/approve", response_model=OriginOut)
async def approve_item(
    origin_id: str, data: ItemApprovalIn, control: ControlDep, actor: ConnectorsApprove
) -> OriginOut:
    """Approve one item as the origin offers it now: ends its quarantine after a definition change
    (review `change` and `flags` in the origin's items first)."""
    return await control.approve_item(actor, origin_id, data)


@router.put("/{origin_id}/auth", response_model=OriginOut)
async def set_origin_auth(origin_id: str, data: OriginAuthIn, control: ControlDep, actor: OriginsManage) -> OriginOut:
    """Set how Bastion authenticates to the origin; the secret is sealed and never shown again."""
    return await control.set_origin_auth(actor, origin_id, data)


@router.post("/{origin_id}/refresh", response_model=OriginOut)
async def refresh_origin(origin_id: str, control: ControlDep, actor: OriginsManage) -> OriginOut:
    return await control.refresh_origin(actor, origin_id)


@router.delete("/{origin_id}", status_code=204)
async def delete_origin(origin_id: str, control: ControlDep, actor: OriginsManage) -> Response:
    await control.delete_origin(actor, origin_id)
    return Response(status_code=204)

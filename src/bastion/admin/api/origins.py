"""Origins: register, list, show (with discovered items), refresh discovery, delete."""

from fastapi import APIRouter, Response

from bastion.admin.deps import AdminPrincipal, ControlDep
from bastion.admin.schemas import OriginIn, OriginOut

router = APIRouter(prefix="/origins", tags=["origins"])


@router.post("", status_code=201, response_model=OriginOut)
async def create_origin(data: OriginIn, control: ControlDep, _: AdminPrincipal) -> OriginOut:
    return await control.create_origin(data)


@router.get("", response_model=list[OriginOut])
async def list_origins(control: ControlDep, _: AdminPrincipal) -> list[OriginOut]:
    return await control.list_origins()


@router.get("/{origin_id}", response_model=OriginOut)
async def show_origin(origin_id: str, control: ControlDep, _: AdminPrincipal) -> OriginOut:
    return await control.get_origin(origin_id)


@router.post("/{origin_id}/refresh", response_model=OriginOut)
async def refresh_origin(origin_id: str, control: ControlDep, _: AdminPrincipal) -> OriginOut:
    return await control.refresh_origin(origin_id)


@router.delete("/{origin_id}", status_code=204)
async def delete_origin(origin_id: str, control: ControlDep, _: AdminPrincipal) -> Response:
    await control.delete_origin(origin_id)
    return Response(status_code=204)

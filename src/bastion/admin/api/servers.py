"""Virtual servers: create, compose items from origins, enable/alias items, publish, delete."""

from fastapi import APIRouter, Response

from bastion.admin.deps import AdminPrincipal, ControlDep
from bastion.admin.schemas import ComposeIn, ItemPatch, ServerIn, ServerOut

router = APIRouter(prefix="/servers", tags=["virtual servers"])


@router.post("", status_code=201, response_model=ServerOut)
async def create_server(data: ServerIn, control: ControlDep, _: AdminPrincipal) -> ServerOut:
    return await control.create_server(data)


@router.get("", response_model=list[ServerOut])
async def list_servers(control: ControlDep, _: AdminPrincipal) -> list[ServerOut]:
    return await control.list_servers()


@router.get("/{server_id}", response_model=ServerOut)
async def show_server(server_id: str, control: ControlDep, _: AdminPrincipal) -> ServerOut:
    return await control.get_server(server_id)


@router.post("/{server_id}/compose", response_model=ServerOut)
async def compose(server_id: str, data: ComposeIn, control: ControlDep, _: AdminPrincipal) -> ServerOut:
    return await control.compose(server_id, data)


@router.patch("/{server_id}/items/{item_id}", response_model=ServerOut)
async def patch_item(
    server_id: str, item_id: str, data: ItemPatch, control: ControlDep, _: AdminPrincipal
) -> ServerOut:
    return await control.patch_item(server_id, item_id, data)


@router.post("/{server_id}/publish", response_model=ServerOut)
async def publish(server_id: str, control: ControlDep, _: AdminPrincipal) -> ServerOut:
    return await control.set_published(server_id, True)


@router.post("/{server_id}/unpublish", response_model=ServerOut)
async def unpublish(server_id: str, control: ControlDep, _: AdminPrincipal) -> ServerOut:
    return await control.set_published(server_id, False)


@router.delete("/{server_id}", status_code=204)
async def delete_server(server_id: str, control: ControlDep, _: AdminPrincipal) -> Response:
    await control.delete_server(server_id)
    return Response(status_code=204)

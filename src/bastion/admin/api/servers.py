"""Virtual servers: create, compose items from origins, enable/alias items, publish, delete."""

from fastapi import APIRouter, Response

from bastion.admin.deps import ControlDep, ServersManage, ServersPublish, ServersRead
from bastion.admin.schemas import ComposeIn, ItemPatch, ServerIn, ServerOut

router = APIRouter(prefix="/servers", tags=["virtual servers"])


@router.post("", status_code=201, response_model=ServerOut)
async def create_server(data: ServerIn, control: ControlDep, actor: ServersManage) -> ServerOut:
    return await control.create_server(actor, data)


@router.get("", response_model=list[ServerOut])
async def list_servers(control: ControlDep, actor: ServersRead) -> list[ServerOut]:
    return await control.list_servers(actor)


@router.get("/{server_id}", response_model=ServerOut)
async def show_server(server_id: str, control: ControlDep, actor: ServersRead) -> ServerOut:
    return await control.get_server(actor, server_id)


@router.post("/{server_id}/compose", response_model=ServerOut)
async def compose(server_id: str, data: ComposeIn, control: ControlDep, actor: ServersManage) -> ServerOut:
    return await control.compose(actor, server_id, data)


@router.patch("/{server_id}/items/{item_id}", response_model=ServerOut)
async def patch_item(
    server_id: str, item_id: str, data: ItemPatch, control: ControlDep, actor: ServersManage
) -> ServerOut:
    return await control.patch_item(actor, server_id, item_id, data)


@router.post("/{server_id}/publish", response_model=ServerOut)
async def publish(server_id: str, control: ControlDep, actor: ServersPublish) -> ServerOut:
    return await control.set_published(actor, server_id, True)


@router.post("/{server_id}/unpublish", response_model=ServerOut)
async def unpublish(server_id: str, control: ControlDep, actor: ServersPublish) -> ServerOut:
    return await control.set_published(actor, server_id, False)


@router.delete("/{server_id}", status_code=204)
async def delete_server(server_id: str, control: ControlDep, actor: ServersManage) -> Response:
    await control.delete_server(actor, server_id)
    return Response(status_code=204)

"""OAuth clients: create a service client (its secret is in this one response), list, delete; and, for
platform administrators, the dynamically registered clients."""

from fastapi import APIRouter, Response

from bastion.admin.deps import ClientsDep, ClientsManage
from bastion.admin.oauth_clients import ClientOut, ServiceClientCreated, ServiceClientIn

router = APIRouter(prefix="/oauth/clients", tags=["oauth clients"])


@router.post("", status_code=201, response_model=ServiceClientCreated)
async def create_client(data: ServiceClientIn, clients: ClientsDep, actor: ClientsManage) -> ServiceClientCreated:
    return await clients.create_service(actor, data)


@router.get("", response_model=list[ClientOut])
async def list_clients(clients: ClientsDep, actor: ClientsManage) -> list[ClientOut]:
    return await clients.list(actor)


@router.get("/registered", response_model=list[ClientOut])
async def list_registered(clients: ClientsDep, actor: ClientsManage) -> list[ClientOut]:
    """Dynamically registered clients (no tenant's): for platform administrators (tenants:manage)."""
    return await clients.list_registered(actor)


@router.delete("/{client_id}", status_code=204)
async def delete_client(client_id: str, clients: ClientsDep, actor: ClientsManage) -> Response:
    await clients.delete(actor, client_id)
    return Response(status_code=204)

"""OAuth clients: create a service client (its secret is in this one response), list, delete."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from bastion.admin.deps import ClientsManage
from bastion.admin.oauth_clients import ClientOut, OAuthClients, ServiceClientCreated, ServiceClientIn
from bastion.web.authserver import AuthServer

router = APIRouter(prefix="/oauth/clients", tags=["oauth clients"])


def _clients(request: Request) -> OAuthClients:
    auth: AuthServer = request.app.state.auth
    return OAuthClients(auth.db, auth.store)


ClientsDep = Annotated[OAuthClients, Depends(_clients)]


@router.post("", status_code=201, response_model=ServiceClientCreated)
async def create_client(data: ServiceClientIn, clients: ClientsDep, actor: ClientsManage) -> ServiceClientCreated:
    return await clients.create_service(actor, data)


@router.get("", response_model=list[ClientOut])
async def list_clients(clients: ClientsDep, actor: ClientsManage) -> list[ClientOut]:
    return await clients.list(actor)


@router.delete("/{client_id}", status_code=204)
async def delete_client(client_id: str, clients: ClientsDep, actor: ClientsManage) -> Response:
    await clients.delete(actor, client_id)
    return Response(status_code=204)

"""Finding a client by its `client_id`: a registered one, or a Client ID Metadata Document URL."""

from __future__ import annotations

from collections.abc import Callable

from bastion.errors import InvalidClient
from bastion.oauth.client_metadata import ClientMetadataResolver, is_client_id_url
from bastion.oauth.provider import Client, OAuthStore
from bastion.oauth.redirects import is_loopback_redirect

__all__ = ["ClientDirectory"]

_DOCUMENT_GRANTS = ("authorization_code", "refresh_token")


class ClientDirectory:
    def __init__(
        self,
        store: OAuthStore,
        documents: ClientMetadataResolver | None,
        admit_document: Callable[[Client], None] = lambda client: None,
    ) -> None:
        """`admit_document`: refuses (InvalidClient) a metadata document's client that the server's
        registration policy would not have registered."""
        self._store = store
        self._documents = documents
        self._admit_document = admit_document

    @property
    def accepts_documents(self) -> bool:
        """Whether an https client_id is fetched as its metadata document (advertised in the metadata)."""
        return self._documents is not None

    async def get(self, client_id: str | None) -> Client:
        if not client_id:
            raise InvalidClient("client_id is required")
        if is_client_id_url(client_id):
            if self._documents is None:
                raise InvalidClient(
                    "this server admits no client by its metadata document "
                    "(BASTION_CLIENT_METADATA_DOCUMENTS=false, or BASTION_REGISTRATION=off)"
                )
            document = await self._documents.resolve(client_id)
            client = Client(
                client_id=client_id,
                kind="metadata_document",
                client_name=document.client_name or client_id,
                redirect_uris=tuple(document.redirect_uris),
                grant_types=tuple(document.grant_types or _DOCUMENT_GRANTS),
                token_endpoint_auth_method=document.token_endpoint_auth_method or "none",
                application_type="native" if _all_loopback(document.redirect_uris) else "web",
                scope=document.scope or "",
            )
            if client.token_endpoint_auth_method != "none":  # noqa: S105 — an auth method name
                # Found out at the token endpoint, it cost the person a sign-in and a consent first.
                raise InvalidClient(
                    f"{client_id}: token_endpoint_auth_method {client.token_endpoint_auth_method} is not "
                    "supported here; a metadata document's client authenticates with none (and PKCE)"
                )
            self._admit_document(client)
            return client
        found = await self._store.get_client(client_id)
        if found is None:
            raise InvalidClient(f"unknown client_id {client_id[:64]!r}: register the client first")
        return found


def _all_loopback(uris: tuple[str, ...]) -> bool:
    return bool(uris) and all(is_loopback_redirect(u) for u in uris)

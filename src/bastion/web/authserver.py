"""AuthServer: the identity plane's parts, built once from Settings and the store."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass, field

from bastion.bus import Bus
from bastion.catalog.holder import SnapshotHolder
from bastion.catalog.snapshot import Snapshot
from bastion.config import Settings
from bastion.identity.lockout import LockoutPolicy
from bastion.logins import Logins
from bastion.net.egress import EgressPolicy
from bastion.oauth.assertion import JWT_BEARER, IdentityAssertionGrant, jwks_fetcher
from bastion.oauth.authorize import Authorizer
from bastion.oauth.client_auth import ClientAuthenticator
from bastion.oauth.client_credentials import CLIENT_CREDENTIALS, ClientCredentialsGrant
from bastion.oauth.client_metadata import ClientMetadataResolver
from bastion.oauth.clients import ClientDirectory
from bastion.oauth.code_grant import AuthorizationCodeGrant
from bastion.oauth.downstream_grants import DownstreamGrants
from bastion.oauth.exchange import TOKEN_EXCHANGE, TokenExchangeGrant
from bastion.oauth.introspection import Introspector
from bastion.oauth.jwt import JwksCache
from bastion.oauth.keys import KeyRing
from bastion.oauth.refresh import RefreshTokenGrant
from bastion.oauth.registration import Registrar
from bastion.oauth.revocation import Revoker
from bastion.oauth.session_tokens import SessionTokens
from bastion.oauth.token import GrantHandler, TokenEndpoint, TokenIssuer
from bastion.pipeline.windows import LimiterStorage
from bastion.store.db import Database
from bastion.store.repos.keys import load_keyring
from bastion.store.repos.oauth import SqlOAuthStore

__all__ = ["AuthServer"]


@dataclass
class AuthServer:
    settings: Settings
    db: Database
    bus: Bus
    holder: SnapshotHolder
    issuer: str
    # Enterprise IdPs whose ID-JAGs the jwt-bearer grant accepts: (issuer, jwks_uri) pairs.
    enterprise_issuers: tuple[tuple[str, str], ...] = ()
    # The data plane's cache of people's downstream grants (per-user OAuth origins), when wired.
    downstream: DownstreamGrants | None = None
    # The limiter's storage (sign-in attempts per name and network); one of its own without.
    limiter: LimiterStorage | None = None
    store: SqlOAuthStore = field(init=False)
    keyring: KeyRing = field(init=False)

    def __post_init__(self) -> None:
        settings = self.settings
        self.store = SqlOAuthStore(self.db, self.bus)
        self.keyring = KeyRing()  # replaced by `start()` with the stored keys
        self.egress = EgressPolicy(
            allow_hosts=tuple(settings.egress_allow_hosts), allow_cidrs=tuple(settings.egress_allow_cidrs)
        )
        context = None
        if settings.egress_ca_file:
            # An extra CA on top of the system's trust store, not instead of it.
            context = ssl.create_default_context()
            context.load_verify_locations(cafile=settings.egress_ca_file)
        self.ssl_context = context  # for every outbound fetch of the identity plane
        documents = None
        # A document names a new client as registration does: with registration off, none is fetched.
        if settings.client_metadata_documents and settings.registration != "off":
            documents = ClientMetadataResolver(self.egress, ssl_context=context)
        self.registrar = Registrar(
            self.store, policy=settings.registration, allowed_hosts=settings.registration_redirect_hosts
        )
        self.clients = ClientDirectory(self.store, documents, self.registrar.admit_document_client)
        self.client_auth = ClientAuthenticator(self.clients)
        self.authorizer = Authorizer(
            store=self.store,
            clients=self.clients,
            snapshot=self._snapshot,
            issuer=self.issuer,
            code_ttl_seconds=settings.auth_code_ttl_seconds,
        )
        self.tokens = TokenIssuer(
            self.store, access_ttl=settings.access_token_ttl_seconds, refresh_ttl=settings.refresh_token_ttl_seconds
        )
        self.sessions = SessionTokens(lambda: self.keyring, self.issuer, settings.login_session_seconds)
        lockout = LockoutPolicy(
            threshold=settings.lockout_threshold,
            base_seconds=settings.lockout_seconds,
            max_seconds=max(3600.0, settings.lockout_seconds),
            account_threshold=settings.lockout_account_threshold,
        )
        self.logins = Logins(self.db, lockout, self.limiter)
        self.revoker = Revoker(self.client_auth, self.store)
        self.introspector = Introspector(self.client_auth, self.store, self._snapshot, self.issuer)
        # Their JWK Sets are fetched through the egress policy, like client metadata documents.
        jwks = JwksCache(jwks_fetcher(self.egress, ssl_context=context), now=self.now)
        self.id_jag = IdentityAssertionGrant(
            store=self.store,
            issuer=self.tokens,
            snapshot=self._snapshot,
            url=self.issuer,
            jwks=jwks,
            trusted=self.enterprise_issuers,
        )
        handlers: dict[str, GrantHandler] = {
            "authorization_code": AuthorizationCodeGrant(self.store, self.tokens, self._snapshot, self.issuer),
            "refresh_token": RefreshTokenGrant(self.store, self.tokens, self._snapshot, self.issuer),
            CLIENT_CREDENTIALS: ClientCredentialsGrant(self.tokens, self._snapshot, self.issuer),
            TOKEN_EXCHANGE: TokenExchangeGrant(
                self.store,
                self._snapshot,
                self.issuer,
                access_ttl=settings.access_token_ttl_seconds,
                jwt_subjects=self.id_jag,  # JWT subject tokens: from the same trusted issuers
            ),
            JWT_BEARER: self.id_jag,
        }
        self.token_endpoint = TokenEndpoint(self.client_auth, handlers)

    def _snapshot(self) -> Snapshot:
        return self.holder.current

    async def start(self) -> None:
        self.keyring = await load_keyring(self.db)

    @staticmethod
    def now() -> float:
        return time.time()

"""The relying party's rules one by one: ID tokens signed with a KeyRing and served as a JWK Set from a
loopback provider, discovery documents, and the operator's provider settings."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from joserfc.jwk import KeySet
from pydantic import ValidationError

from bastion.config import Settings
from bastion.errors import UpstreamProtocolError
from bastion.net import EgressPolicy, fetch_limited
from bastion.oauth.federation import BrowserBinding, RelyingParty, identity_from_claims, validate_id_token
from bastion.oauth.jwt import InvalidToken, JwksCache
from bastion.oauth.keys import KeyRing
from bastion.oauth.oidc_discovery import OidcProviderConfig, ProviderMetadata, parse_metadata
from tests.tls import serve

pytestmark = pytest.mark.anyio

LOOPBACK = EgressPolicy(allow_cidrs=("127.0.0.0/8",))
RING = KeyRing.fresh(time.time())
NONCE = BrowserBinding("the-browser-secret").nonce
ROLE_MAP = {"engineering": "developer", "mcp-admins": "operator"}


@dataclass
class Provider:
    """A provider's published documents, served on loopback, and its ID tokens signed by RING."""

    config: OidcProviderConfig
    metadata: ProviderMetadata
    keys: KeySet

    def id_token(self, **changes: Any) -> str:
        now = int(time.time())
        claims = {"iss": self.metadata.issuer, "aud": "bastion", "sub": "dana", "iat": now, "exp": now + 300}
        claims |= {"nonce": NONCE, "preferred_username": "dana", "groups": ["engineering", "sales"], **changes}
        return RING.sign({k: v for k, v in claims.items() if v is not None}, typ="JWT")

    def validate(self, token: str) -> dict[str, Any]:
        return validate_id_token(
            token, self.keys, metadata=self.metadata, client_id="bastion", nonce=NONCE, now=time.time()
        )


async def _fetch_json(url: str) -> dict[str, Any]:
    fetched = await fetch_limited(LOOPBACK, url, max_bytes=65_536, timeout_seconds=5)
    document: dict[str, Any] = json.loads(fetched.body)
    return document


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    documents: dict[str, Any] = {"/jwks": RING.jwks()}

    async def handle(request: web.Request) -> web.Response:
        return web.json_response(documents[request.path])

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    async with serve(app) as port:
        issuer = f"http://127.0.0.1:{port}"
        documents["/.well-known/openid-configuration"] = {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{issuer}/jwks",
            "id_token_signing_alg_values_supported": ["ES256"],
        }
        config = OidcProviderConfig(name="corp", issuer=issuer, client_id="bastion", role_map=ROLE_MAP)
        party = RelyingParty(config, LOOPBACK, redirect_uri="http://127.0.0.1:8080/oauth/federate/corp/callback")
        metadata = await party.metadata()  # discovery, through the egress policy
        keys = await JwksCache(_fetch_json, now=time.time).key_set(metadata.jwks_uri)
        yield Provider(config, metadata, keys)


def _unsigned(claims: dict[str, Any]) -> str:
    def segment(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}."


async def test_a_valid_id_token_names_the_person_and_their_groups_map_to_roles(provider: Provider) -> None:
    identity = identity_from_claims(provider.config, provider.validate(provider.id_token()))
    assert (identity.subject, identity.username, identity.groups) == ("dana", "corp:dana", ("engineering", "sales"))
    assert identity.roles == ("developer",)  # "sales" maps to nothing


async def test_an_id_token_with_another_nonce_or_none_at_all_is_refused(provider: Provider) -> None:
    for nonce in ("a-nonce-from-another-sign-in", None):
        with pytest.raises(InvalidToken, match="nonce does not match"):
            provider.validate(provider.id_token(nonce=nonce))


async def test_an_unsigned_alg_none_id_token_is_refused(provider: Provider) -> None:
    now = int(time.time())
    claims = {"iss": provider.metadata.issuer, "aud": "bastion", "sub": "dana", "iat": now, "exp": now + 60}
    with pytest.raises(InvalidToken, match="alg none"):
        provider.validate(_unsigned({**claims, "nonce": NONCE}))


# Times are offsets from the moment each test runs (collection may happen minutes earlier).
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        (lambda now: {"aud": "another-client"}, "audience does not include"),
        (lambda now: {"aud": ["bastion", "another-client"]}, "no authorized party"),
        (lambda now: {"aud": ["bastion", "another-client"], "azp": "another-client"}, "another authorized party"),
        (lambda now: {"azp": "another-client"}, "another authorized party"),
        (lambda now: {"iss": "https://idp.example.com"}, "another issuer"),
        (lambda now: {"exp": now - 3600}, "expired"),
        (lambda now: {"iat": now - 3600, "exp": now + 60}, "too old"),
        (lambda now: {"sub": None}, "lacks required claims: sub"),
    ],
)
async def test_an_id_token_breaking_an_oidc_core_rule_is_refused(
    provider: Provider, changes: Callable[[int], dict[str, Any]], reason: str
) -> None:
    with pytest.raises(InvalidToken, match=reason):
        provider.validate(provider.id_token(**changes(int(time.time()))))


async def test_several_audiences_are_accepted_when_bastion_is_the_authorized_party(provider: Provider) -> None:
    claims = provider.validate(provider.id_token(aud=["bastion", "another-client"], azp="bastion"))
    assert claims["sub"] == "dana"


def test_without_a_preferred_username_the_subject_names_the_user_and_one_group_may_be_a_string() -> None:
    config = OidcProviderConfig(name="corp", issuer="https://idp.example.com", client_id="c", role_map=ROLE_MAP)
    identity = identity_from_claims(config, {"sub": "248289761001", "groups": "mcp-admins"})
    assert (identity.username, identity.groups, identity.roles) == ("corp:248289761001", ("mcp-admins",), ("operator",))


def test_the_flow_values_derive_from_the_browser_secret_and_reveal_nothing_of_each_other() -> None:
    binding = BrowserBinding.new()
    values = {binding.state_binding, binding.nonce, binding.code_verifier, binding.code_challenge, binding.secret}
    assert len(values) == 5 and len(binding.code_verifier) == 43
    assert binding.secret not in repr(binding)
    assert BrowserBinding(binding.secret).nonce == binding.nonce


# --- discovery documents and settings ------------------------------------------------------------------

DOCUMENT = {
    "issuer": "https://idp.example.com",
    "authorization_endpoint": "https://idp.example.com/authorize",
    "token_endpoint": "https://idp.example.com/token",
    "jwks_uri": "https://idp.example.com/jwks",
}


def test_a_discovery_document_naming_another_issuer_is_refused() -> None:
    for issuer in ("https://evil.example.com", "https://idp.example.com/", None):
        with pytest.raises(UpstreamProtocolError, match=r"Discovery §4\.3"):
            parse_metadata("https://idp.example.com", {**DOCUMENT, "issuer": issuer})


def test_a_provider_signing_only_with_none_or_a_shared_secret_is_refused() -> None:
    def metadata(*algorithms: str) -> ProviderMetadata:
        document = {**DOCUMENT, "id_token_signing_alg_values_supported": list(algorithms)}
        return parse_metadata("https://idp.example.com", document)

    for algorithms in (["none"], ["HS256", "none"], []):
        with pytest.raises(UpstreamProtocolError, match="no algorithm Bastion accepts"):
            metadata(*algorithms)
    assert metadata("none", "HS256", "RS256").signing_algorithms == ("RS256",)


def test_a_discovery_document_with_a_plain_http_endpoint_elsewhere_is_refused() -> None:
    with pytest.raises(UpstreamProtocolError, match="token_endpoint must be an https URL"):
        parse_metadata("https://idp.example.com", {**DOCUMENT, "token_endpoint": "http://idp.example.com/token"})


def test_providers_are_read_from_json_and_their_secrets_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = {"name": "corp", "issuer": "https://idp.example.com", "client_id": "bastion", "client_secret": "s3cr3t!"}
    monkeypatch.setenv("BASTION_OIDC_PROVIDERS", json.dumps([{**entry, "role_map": ROLE_MAP}]))
    settings = Settings()
    (corp,) = settings.oidc_providers
    assert corp.client_secret is not None and corp.client_secret.get_secret_value() == "s3cr3t!"
    assert corp.role_map == ROLE_MAP and corp.scopes == ("openid", "profile")
    assert "s3cr3t!" not in repr(settings) and "s3cr3t!" not in str(settings.model_dump())
    refusals = {
        "each OpenID provider needs a name of its own": [entry, entry],
        "https URL": [{**entry, "issuer": "http://idp.example.com"}],
        "must include 'openid'": [{**entry, "scopes": ["profile"]}],
        "Field required": [{k: v for k, v in entry.items() if k != "client_id"}],
    }
    for message, providers in refusals.items():
        monkeypatch.setenv("BASTION_OIDC_PROVIDERS", json.dumps(providers))
        with pytest.raises(ValidationError, match=message) as refused:
            Settings()
        assert "s3cr3t!" not in str(refused.value)
    monkeypatch.setenv("BASTION_OIDC_PROVIDERS", json.dumps(entry))  # one object where a list belongs
    with pytest.raises(ValidationError, match="list") as refused:
        Settings()
    assert "s3cr3t!" not in str(refused.value)

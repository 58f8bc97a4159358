"""OpenID Connect Discovery 1.0: an external provider as the operator configures it, and what it publishes.

`OidcProviderConfig` is the operator's side (one entry of BASTION_OIDC_PROVIDERS);
`parse_metadata` judges the provider's own discovery document against it. The
relying-party flow that uses both is `bastion.oauth.federation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

from bastion.errors import UpstreamProtocolError

__all__ = ["OidcProviderConfig", "OidcProviders", "ProviderMetadata", "discovery_url", "parse_metadata"]

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


def _checked_url(value: str, what: str) -> str:
    parts = urlsplit(value)
    # Discovery §3 / Core §2: https URLs; plain http only to this machine (tests, a local IdP).
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise ValueError(f"{what} must be an https URL (http only on loopback): {value!r}")
    if not parts.hostname or parts.fragment or (what == "issuer" and parts.query):
        raise ValueError(f"{what} must be an absolute URL without a fragment (an issuer: without a query either)")
    return value


class OidcProviderConfig(BaseModel):
    """One external OpenID provider people may sign in with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
        description="Short name: in URLs, on the sign-in button, and the prefix of its users' names.",
    )
    issuer: str = Field(description="Issuer identifier, exactly as the provider's discovery document states it.")
    client_id: str = Field(min_length=1, description="Bastion's client_id at the provider.")
    client_secret: SecretStr | None = Field(
        None, repr=False, description="Bastion's client secret at the provider; unset for a public client."
    )
    scopes: tuple[str, ...] = Field(("openid", "profile"), description="Scopes requested; must include openid.")
    group_claim: str = Field("groups", min_length=1, description="The claim that lists the person's groups.")
    role_map: dict[str, str] = Field(
        default_factory=dict, description="Provider group → Bastion role; groups not listed grant nothing."
    )
    tenant: str = Field(
        "default", pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", description="Slug of the tenant its users belong to."
    )

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        return _checked_url(value, "issuer")

    @field_validator("scopes")
    @classmethod
    def _openid_scope(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:  # Core §3.1.2.1: without it the request is not OpenID Connect
            raise ValueError("scopes must include 'openid'")
        return value


def _mask_secrets(value: object) -> object:
    # Wrapped before validation, so an error that quotes a refused entry prints '**********': in a
    # list, or a single object given where the list belongs (its error quotes the object whole).
    def masked(item: object) -> object:
        if isinstance(item, dict) and isinstance(item.get("client_secret"), str):
            return {**item, "client_secret": SecretStr(item["client_secret"])}
        return item

    return [masked(item) for item in value] if isinstance(value, list) else masked(value)


def _unique_names(value: object) -> object:
    # Runs on the masked entries (BeforeValidators run last-declared first), so a refusal quotes no secret.
    names = [item.get("name") for item in value if isinstance(item, dict)] if isinstance(value, list) else []
    if len(set(names)) != len(names):
        raise ValueError("each OpenID provider needs a name of its own")
    return value


OidcProviders = Annotated[list[OidcProviderConfig], BeforeValidator(_unique_names), BeforeValidator(_mask_secrets)]


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of a discovery document (Discovery §3) a relying party uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    signing_algorithms: tuple[str, ...]  # for ID tokens; never none, never a shared-secret MAC
    auth_methods: tuple[str, ...]  # token endpoint client authentication
    iss_parameter: bool  # RFC 9207: authorization responses carry iss


def discovery_url(issuer: str) -> str:
    # Discovery §4.1: the issuer, less any trailing slash, plus the well-known path.
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


def _url(document: Mapping[str, Any], key: str, issuer: str) -> str:
    value = document.get(key)
    try:
        if not isinstance(value, str):
            raise ValueError(f"{key} is missing")
        return _checked_url(value, key)
    except ValueError as error:
        raise UpstreamProtocolError(f"{issuer}'s discovery document is unusable: {error}") from None


def parse_metadata(expected_issuer: str, document: Mapping[str, Any]) -> ProviderMetadata:
    """The document fetched from `discovery_url(expected_issuer)`, refused unless it is that issuer's."""
    issuer = document.get("issuer")
    if issuer != expected_issuer:  # Discovery §4.3: identical to the issuer it was fetched for
        raise UpstreamProtocolError(
            f"the discovery document of {expected_issuer} names another issuer ({str(issuer)[:200]!r}); "
            "refused (OpenID Connect Discovery §4.3): configure the issuer exactly as the provider states it"
        )
    advertised = document.get("id_token_signing_alg_values_supported", ["RS256"])
    # Core §3.1.3.7 steps 6-8: signatures by the provider's published keys; never none (RFC 8725 §3.2),
    # and no HS* MACs, which would make the client secret a signing key.
    algorithms = tuple(
        alg
        for alg in (advertised if isinstance(advertised, list) else [])
        if isinstance(alg, str) and alg.lower() != "none" and not alg.upper().startswith("HS")
    )
    if not algorithms:
        raise UpstreamProtocolError(f"{expected_issuer} signs ID tokens with no algorithm Bastion accepts")
    methods = document.get("token_endpoint_auth_methods_supported", ["client_secret_basic"])  # Discovery §3
    userinfo = document.get("userinfo_endpoint")
    return ProviderMetadata(
        issuer=expected_issuer,
        authorization_endpoint=_url(document, "authorization_endpoint", expected_issuer),
        token_endpoint=_url(document, "token_endpoint", expected_issuer),
        jwks_uri=_url(document, "jwks_uri", expected_issuer),
        userinfo_endpoint=None if userinfo is None else _url(document, "userinfo_endpoint", expected_issuer),
        signing_algorithms=algorithms,
        auth_methods=tuple(m for m in methods if isinstance(m, str)) if isinstance(methods, list) else (),
        iss_parameter=document.get("authorization_response_iss_parameter_supported") is True,
    )

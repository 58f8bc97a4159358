"""The configured OpenID providers as relying parties, kept on the app, and where a "Sign in with …"
form's answer may send the browser (what the page's CSP `form-action` must allow)."""

from __future__ import annotations

import time

import anyio
from fastapi import Request

from bastion.errors import BastionError, NotFound
from bastion.oauth.federation import RelyingParty
from bastion.web.authserver import AuthServer

__all__ = ["callback_path", "party", "sign_in_targets"]

_DISCOVERY_WAIT = 2.0  # seconds a sign-in page waits for a provider's discovery document
_RETRY_SECONDS = 60.0  # after a failed discovery, pages do not wait for that provider again for this long


def callback_path(provider: str) -> str:
    return f"/oauth/federate/{provider}/callback"


def party(request: Request, auth: AuthServer, provider: str) -> RelyingParty:
    """The provider's relying party, built on first use from the settings and kept on the app."""
    parties: dict[str, RelyingParty] | None = getattr(request.app.state, "oidc_parties", None)
    if parties is None:
        settings = auth.settings
        parties = {
            config.name: RelyingParty(
                config,
                auth.egress,
                redirect_uri=auth.issuer + callback_path(config.name),
                ssl_context=auth.ssl_context,  # the system's trust store and the extra CA
                now=auth.now,
            )
            for config in settings.oidc_providers
        }
        request.app.state.oidc_parties = parties
    found = parties.get(provider)
    if found is None:
        raise NotFound(f"no identity provider named {provider[:64]!r} is configured here")
    return found


async def sign_in_targets(request: Request, auth: AuthServer) -> list[str]:
    """Each provider's issuer and its authorization endpoint: browsers apply `form-action` to where
    a form's answer redirects, and a provider may authorize on another host than its issuer's. The
    endpoint comes from its discovery document (cached an hour); a provider that does not answer
    within a moment is left at its issuer (its sign-in then fails at the browser, as before), and
    is not waited for again for a minute."""
    failed: dict[str, float] | None = getattr(request.app.state, "oidc_discovery_failed", None)
    if failed is None:
        failed = request.app.state.oidc_discovery_failed = {}
    targets: list[str] = []
    for config in auth.settings.oidc_providers:
        targets.append(config.issuer)
        if config.name in failed and time.monotonic() - failed[config.name] < _RETRY_SECONDS:
            continue  # failed a moment ago: no sign-in page waits for it again until then
        found = None
        with anyio.move_on_after(_DISCOVERY_WAIT):
            try:
                found = (await party(request, auth, config.name).metadata()).authorization_endpoint
            except BastionError:
                pass  # unreachable or malformed: the sign-in itself will say so
        if found is None:
            failed[config.name] = time.monotonic()
        else:
            failed.pop(config.name, None)
            targets.append(found)
    return targets

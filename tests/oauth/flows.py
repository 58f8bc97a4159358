"""Driving Bastion's authorization server the way a client and a person do, over real HTTP.

A `Flow` is one person's browser (cookies kept, redirects to the client not followed)
plus the client's own calls: register, authorize up to the code, exchange it,
refresh, and raw MCP requests on the 2026-07-28 wire (no session, so each request
stands alone and its HTTP status is the whole answer). `own_database` opens the
test's own handle on Bastion's SQLite file, for the few facts a test must set by
hand (an expiry in the past) and then announce with an epoch bump.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx

from bastion.store.db import Database, bump_epoch
from bastion.store.tenancy import SYSTEM
from tests.harness import ADMIN_PASSWORD, STDIO_INVENTORY, Bastion, eventually
from tests.oauth_browser import Redirect, hidden_field

__all__ = [
    "MODERN",
    "REDIRECT_URI",
    "Flow",
    "Pkce",
    "Tokens",
    "bump_and_wait",
    "error_of",
    "mcp_request",
    "own_database",
    "page_message",
    "publish_demo",
]

REDIRECT_URI = "http://127.0.0.1:33418/callback"
MODERN = "2026-07-28"
_ACCEPT = "application/json, text/event-stream"


@dataclass(frozen=True)
class Pkce:
    """RFC 7636 §4.1-4.2: a fresh verifier and its S256 challenge."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode()).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).decode().rstrip("="))


@dataclass(frozen=True)
class Tokens:
    client_id: str
    access_token: str
    refresh_token: str | None
    scope: str


def publish_demo(bastion: Bastion, *slugs: str) -> None:
    """The demo inventory origin, published as each of `slugs` with all its tools."""
    bastion.add_origin("inventory", command=STDIO_INVENTORY)
    for slug in slugs:
        bastion.publish_server(slug, {"origin": "inventory"})


def error_of(redirect: Redirect) -> tuple[str, str]:
    """(error, error_description) of an error redirect back to the client."""
    params = redirect.params
    assert "code" not in params, redirect.location
    return params["error"], params.get("error_description", "")


def _modern_body(method: str, params: dict[str, Any]) -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}


async def mcp_request(
    http: httpx.AsyncClient, url: str, token: str | None, method: str = "tools/list", **params: Any
) -> httpx.Response:
    """One stateless 2026-07-28 request; `tools/call` takes `name` and `arguments` in `params`."""
    headers = {"accept": _ACCEPT, "mcp-protocol-version": MODERN, "mcp-method": method}
    if method == "tools/call":
        headers["mcp-name"] = params["name"]
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return await http.post(url, json=_modern_body(method, params), headers=headers)


@asynccontextmanager
async def own_database(bastion: Bastion) -> AsyncIterator[Database]:
    """A handle on Bastion's own database file, bound to the test's event loop.

    Bastion's `services.db` lives on the server thread's loop; its async engine must not
    be driven from another loop, so tests open the same file through the same class.
    """
    db = Database(bastion.settings.database_url)
    try:
        yield db
    finally:
        await db.close()


async def bump_and_wait(bastion: Bastion, db: Database) -> None:
    """Bump the change epoch (as every write of Bastion's does) and wait until Bastion sees it.

    The bearer cache belongs to one epoch, so a row changed by hand takes effect on the
    next request once the snapshot holder has polled the new epoch.
    """
    async with db.session(SYSTEM) as session:
        await bump_epoch(session)
    target = await db.read_epoch()

    async def seen() -> bool:
        return bastion.services.holder.current.epoch >= target

    await eventually(seen)


@dataclass
class Flow:
    """One person at one browser, and the client application they use."""

    bastion: Bastion
    user_agent: str = "flows-test-browser/1.0"
    username: str = "admin"  # who signs in
    http: httpx.AsyncClient = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.AsyncClient(
            base_url=self.bastion.base_url,
            follow_redirects=False,
            timeout=30,
            headers={"user-agent": self.user_agent},
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> Flow:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    # --- the client ------------------------------------------------------------------------
    async def register(self, **metadata: Any) -> dict[str, Any]:
        body = {
            "client_name": "Flow test client",
            "redirect_uris": [REDIRECT_URI],
            "token_endpoint_auth_method": "none",
        }
        response = await self.http.post("/oauth/register", json={**body, **metadata})
        assert response.status_code == 201, response.text
        registered: dict[str, Any] = response.json()
        return registered

    def authorize_path(
        self,
        client: str,
        pkce: Pkce,
        *,
        slug: str | None = "demo",
        scope: str | None = None,
        state: str | None = "st-8e2f",
        redirect_uri: str = REDIRECT_URI,
        **overrides: str | None,
    ) -> str:
        """/oauth/authorize with a complete request; an override of None drops that parameter."""
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": client,
            "redirect_uri": redirect_uri,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
            "resource": self.bastion.mcp_url(slug) if slug else None,
            "scope": scope,
            "state": state,
            **overrides,
        }
        return "/oauth/authorize?" + urlencode({k: v for k, v in params.items() if v is not None})

    async def exchange(
        self,
        client: str,
        code: str,
        pkce: Pkce,
        *,
        slug: str = "demo",
        redirect_uri: str = REDIRECT_URI,
        **overrides: str | None,
    ) -> httpx.Response:
        form: dict[str, str | None] = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": client,
            "code_verifier": pkce.verifier,
            "resource": self.bastion.mcp_url(slug),
            **overrides,
        }
        return await self.http.post("/oauth/token", data={k: v for k, v in form.items() if v is not None})

    async def refresh(self, client_id: str, refresh_token: str, **extra: str) -> httpx.Response:
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id, **extra}
        return await self.http.post("/oauth/token", data=form)

    # --- the person ------------------------------------------------------------------------
    async def sign_in(self, page: httpx.Response, password: str = ADMIN_PASSWORD) -> httpx.Response:
        form = {"username": self.username, "password": password, "request": hidden_field(page.text, "request")}
        return await self.http.post("/oauth/login", data=form)

    async def decide(self, consent: httpx.Response, decision: str = "approve") -> Redirect:
        form = {
            "request": hidden_field(consent.text, "request"),
            "csrf": hidden_field(consent.text, "csrf"),
            "decision": decision,
        }
        done = await self.http.post("/oauth/consent", data=form)
        assert done.status_code == 302, done.text
        return Redirect(done.headers["location"])

    async def consent_page(self, path: str) -> httpx.Response:
        """Open `path`, signing in when asked; the consent page (or a redirect, when remembered)."""
        page = await self.http.get(path)
        if page.status_code == 200 and 'action="/oauth/login"' in page.text:
            page = await self.sign_in(page)
        return page

    async def authorize(self, path: str, decision: str = "approve") -> Redirect:
        """Everything the person does: sign in if need be, then allow (or deny) unless remembered."""
        page = await self.consent_page(path)
        if page.status_code == 302:
            return Redirect(page.headers["location"])
        if page.status_code >= 400:  # an error the client learns of through the page's link
            return client_link(page)
        assert page.status_code == 200 and "Allow access?" in page.text, (page.status_code, page.text)
        return await self.decide(page, decision)

    # --- both ------------------------------------------------------------------------------
    async def code_for(self, client_id: str, pkce: Pkce, **authorize: Any) -> str:
        redirect = await self.authorize(self.authorize_path(client_id, pkce, **authorize))
        assert "code" in redirect.params, redirect.location
        return redirect.params["code"]

    async def tokens(self, client_id: str | None = None, *, slug: str = "demo", scope: str | None = None) -> Tokens:
        """A fresh grant: registers a client unless given one, authorizes and exchanges the code."""
        if client_id is None:
            client_id = str((await self.register())["client_id"])
        pkce = Pkce.new()
        code = await self.code_for(client_id, pkce, slug=slug, scope=scope)
        response = await self.exchange(client_id, code, pkce, slug=slug)
        assert response.status_code == 200, response.text
        body = response.json()
        return Tokens(client_id, body["access_token"], body.get("refresh_token"), body["scope"])


def client_link(page: httpx.Response) -> Redirect:
    """Where an error page's "Return to ..." link leads: the client's redirect URI with the error
    (Bastion does not send the browser there by itself; see `bastion.oauth.authorize`)."""
    assert page.status_code >= 400 and "location" not in page.headers, (page.status_code, page.headers)
    match = re.search(r'<a href="([^"]+)" rel="noreferrer">Return to ', page.text)
    assert match, page.text[:2000]
    return Redirect(html.unescape(match.group(1)))


def page_message(page: httpx.Response) -> str:
    """The error message an error page shows (unescaped)."""
    match = re.search(r'<p class="error" role="alert">(.*?)</p>', page.text, re.S)
    assert match, page.text[:2000]
    return html.unescape(match.group(1))

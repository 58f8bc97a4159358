"""Sign-in through an external OpenID provider: a real, certified one (panva/oidc-provider on Node) on
loopback, driven as a browser would; ID token rules checked on tokens signed with a KeyRing."""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx
import pytest
from sqlalchemy import select

from bastion.bus import MemoryBus
from bastion.identity.tokens import hash_token
from bastion.store.db import Database
from bastion.store.models import LoginEvent, User
from bastion.store.repos.oauth import SqlOAuthStore
from bastion.store.tenancy import SYSTEM
from tests.harness import ADMIN_PASSWORD, STDIO_INVENTORY, Bastion, free_port, run_bastion, wait_for_port
from tests.oauth_browser import Redirect, hidden_field

pytestmark = pytest.mark.anyio

IDP_DIR = Path(__file__).resolve().parents[1] / "idp"
CLIENT_REDIRECT = "http://127.0.0.1:33418/callback"
ROLE_MAP = {"engineering": "developer", "mcp-admins": "operator"}


# --- the real provider, and Bastion configured with it ---------------------------------------------


def _node() -> str:
    node = shutil.which("node")
    reason = None
    if node is None:
        reason = "Node.js is not installed, so the OpenID provider (tests/idp) cannot run"
    elif not (IDP_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        reason = "tests/idp has no node_modules: run `make install-test` (npm ci --prefix tests/idp)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the federation tests")
        pytest.skip(reason)
    assert node is not None
    return node


@contextmanager
def oidc_provider(workdir: Path, port: int, redirect_uri: str) -> Iterator[str]:
    """panva/oidc-provider on loopback `port`; yields its issuer."""
    node, log_path = _node(), workdir / "idp.log"
    with log_path.open("w") as log:
        command = [node, str(IDP_DIR / "provider.mjs"), "--port", str(port), "--redirect-uri", redirect_uri]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            try:
                wait_for_port(port)
            except TimeoutError:
                raise AssertionError("the OpenID provider did not start:\n" + log_path.read_text()) from None
            yield f"http://127.0.0.1:{port}"
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@dataclass
class World:
    bastion: Bastion
    issuer: str
    client_id: str  # an MCP client registered at Bastion


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    _node()  # skip (or, under CI, fail) before starting anything
    workdir, idp_port = tmp_path_factory.mktemp("federation"), free_port()
    issuer = f"http://127.0.0.1:{idp_port}"
    idp = {"issuer": issuer, "client_id": "bastion", "client_secret": "bastion-test-secret"}
    providers = [
        {"name": "idp", **idp, "scopes": ["openid", "profile", "groups"], "role_map": ROLE_MAP},
        # The same provider, configured under a spelling of its issuer it does not use itself.
        {"name": "lookalike", **idp, "issuer": f"http://localhost:{idp_port}"},
    ]
    # Bastion first (it contacts providers only when someone signs in), so the provider can be
    # told the callback URL on Bastion's port.
    with run_bastion(workdir, oidc_providers=providers, egress_allow_cidrs=["127.0.0.0/8"], admin_ui=True) as bastion:
        callback = f"{bastion.base_url}/oauth/federate/idp/callback"
        with oidc_provider(workdir, idp_port, callback):
            bastion.add_origin("inventory", command=STDIO_INVENTORY)
            bastion.publish_server("demo", {"origin": "inventory"})
            body = {"client_name": "Agent", "redirect_uris": [CLIENT_REDIRECT], "token_endpoint_auth_method": "none"}
            registered = bastion.http.post("/oauth/register", json=body)
            assert registered.status_code == 201, registered.text
            yield World(bastion, issuer, registered.json()["client_id"])


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as http:
        yield http


VERIFIER = "federation-test-verifier-" + "v" * 40
CHALLENGE = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).decode().rstrip("=")


async def _login_page(world: World, http: httpx.AsyncClient) -> httpx.Response:
    params = {
        "response_type": "code",
        "client_id": world.client_id,
        "redirect_uri": CLIENT_REDIRECT,
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        "resource": world.bastion.mcp_url("demo"),
        "state": "client-state",
    }
    page = await http.get(f"{world.bastion.base_url}/oauth/authorize?{urlencode(params)}")
    assert page.status_code == 200 and "Sign in with idp" in page.text, page.text[:2000]
    # Browsers apply form-action to the redirect after a form post: the provider must be listed.
    form_action = page.headers["content-security-policy"].split("form-action ")[1].split(";")[0].split()
    assert world.issuer in form_action and "'self'" in form_action
    return page


async def _federate(world: World, http: httpx.AsyncClient, provider: str = "idp") -> httpx.Response:
    page = await _login_page(world, http)
    form = {"request": hidden_field(page.text, "request")}
    return await http.post(f"{world.bastion.base_url}/oauth/federate/{provider}", data=form)


def _find(pattern: str, page: str) -> str:
    match = re.search(pattern, page)
    assert match, f"no {pattern!r} in:\n{page[:2000]}"
    return html.unescape(match.group(1))


async def _at_provider(http: httpx.AsyncClient, url: str, login: str, *, abort: bool = False) -> str:
    """What a person does at the provider's (development) pages; the URL it sends the browser back to."""
    while urlsplit(url).path != "/oauth/federate/idp/callback":
        response = await http.get(url)
        while response.status_code == 200:  # a sign-in or consent page: fill it in, submit it
            if abort:  # or press its Cancel link
                return await _at_provider(http, urljoin(url, _find(r'href="([^"]*/abort)"', response.text)), login)
            action = _find(r'<form[^>]*action="([^"]+)"', response.text)
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.text))
            if 'name="login"' in response.text:
                fields |= {"login": login, "password": "any password will do"}
            response = await http.post(urljoin(url, action), data=fields)
        assert response.status_code in (302, 303), (response.status_code, response.text[:1000])
        url = urljoin(url, response.headers["location"])
    return url


def _with_param(url: str, **params: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query=urlencode({**dict(parse_qsl(parts.query)), **params})))


async def _federated_user(world: World, subject: str) -> tuple[User | None, list[LoginEvent]]:
    db = Database(world.bastion.settings.database_url)  # our own handle: Bastion's lives on its own loop
    try:
        async with db.session(SYSTEM) as session:
            user = await session.scalar(select(User).where(User.provider == "idp", User.subject == subject))
            events = (await session.scalars(select(LoginEvent).where(LoginEvent.username.like("idp:%")))).all()
            return user, list(events)
    finally:
        await db.close()


# --- the whole path, with the real provider -----------------------------------------------------------


async def test_a_person_signs_in_to_the_admin_console_at_the_provider(world: World, browser: httpx.AsyncClient) -> None:
    base = world.bastion.base_url
    form = await browser.get(f"{base}/admin/login?next=%2Fadmin%2Faccount")
    assert form.status_code == 200 and "Sign in with idp" in form.text
    form_action = form.headers["content-security-policy"].split("form-action ")[1].split(";")[0].split()
    assert world.issuer in form_action  # the form's answer redirects there
    refused = await browser.post(f"{base}/admin/login/idp", data={"csrf": "forged", "next": "/admin/account"})
    assert refused.status_code == 403
    to_provider = await browser.post(
        f"{base}/admin/login/idp", data={"csrf": hidden_field(form.text, "csrf"), "next": "/admin/account"}
    )
    assert to_provider.status_code == 303 and to_provider.headers["location"].startswith(world.issuer + "/auth?")
    landing = await browser.get(await _at_provider(browser, to_provider.headers["location"], "dana"))
    assert landing.status_code == 200, landing.text[:2000]
    # The session cookie is SameSite=Strict: the console continues from a page of Bastion's own.
    assert 'href="/admin/account"' in landing.text and "idp:dana" in landing.text
    assert "bastion_session=" in landing.headers["set-cookie"]
    account = await browser.get(f"{base}/admin/account")
    assert account.status_code == 200 and "idp:dana" in account.text, account.text[:2000]
    user, events = await _federated_user(world, "dana")
    assert user is not None and any(e.outcome == "success" and e.user_id == user.id for e in events)


async def test_a_sign_in_at_the_provider_ends_the_console_session_the_browser_held(
    world: World, browser: httpx.AsyncClient
) -> None:
    """Someone signing in at the provider on a browser another person used: a copy of that person's
    cookie must not outlive the sign-in. It ends when the sign-in starts, the last request of the
    flow that carries the SameSite=Strict cookie (the provider's answer arrives without it)."""
    base = world.bastion.base_url
    signed_in = await browser.post(f"{base}/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
    copy = signed_in.cookies["bastion_session"]
    assert (await browser.get(f"{base}/auth/session")).status_code == 200
    form = await browser.get(f"{base}/admin/login?next=%2Fadmin%2Faccount")
    to_provider = await browser.post(
        f"{base}/admin/login/idp", data={"csrf": hidden_field(form.text, "csrf"), "next": "/admin/account"}
    )
    assert to_provider.status_code == 303 and "bastion_session" not in browser.cookies
    async with httpx.AsyncClient(cookies={"bastion_session": copy}) as other:
        refused = await other.get(f"{base}/auth/session")
    assert refused.status_code == 401 and "signed out" in refused.json()["error"]["message"]
    landing = await browser.get(await _at_provider(browser, to_provider.headers["location"], "dana"))
    assert landing.status_code == 200 and "idp:dana" in landing.text, landing.text[:2000]
    assert (await browser.get(f"{base}/admin/account")).status_code == 200


async def test_a_person_signs_in_at_the_provider_and_their_groups_become_bastion_roles(
    world: World, browser: httpx.AsyncClient
) -> None:
    to_provider = await _federate(world, browser)
    assert to_provider.status_code == 303 and to_provider.headers["location"].startswith(world.issuer + "/auth?")
    callback = await _at_provider(browser, to_provider.headers["location"], "alice")
    consent = await browser.get(callback)
    assert consent.status_code == 200 and "Allow access?" in consent.text, consent.text[:2000]
    assert "idp:alice.smith" in consent.text  # the provider's preferred_username, under the provider's name
    form = {"request": hidden_field(consent.text, "request"), "csrf": hidden_field(consent.text, "csrf")}
    done = await browser.post(f"{world.bastion.base_url}/oauth/consent", data={**form, "decision": "approve"})
    redirect = Redirect(done.headers["location"])
    assert redirect.location.startswith(CLIENT_REDIRECT) and redirect.params["state"] == "client-state"
    token = await browser.post(
        f"{world.bastion.base_url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": redirect.params["code"],
            "redirect_uri": CLIENT_REDIRECT,
            "client_id": world.client_id,
            "code_verifier": VERIFIER,
            "resource": world.bastion.mcp_url("demo"),
        },
    )
    assert token.status_code == 200, token.text
    db = Database(world.bastion.settings.database_url)
    try:
        principal = await SqlOAuthStore(db, MemoryBus()).access_principal(hash_token(token.json()["access_token"]))
    finally:
        await db.close()
    assert principal is not None and principal.username == "idp:alice.smith" and not principal.is_admin
    assert principal.roles == {"developer", "operator"}  # "staff" is in no role_map entry: no role
    user, events = await _federated_user(world, "alice")
    assert user is not None and user.id == principal.user_id and user.roles == ["developer", "operator"]
    assert any(e.outcome == "success" and e.user_id == user.id for e in events)


async def test_signing_in_again_reuses_the_same_user_and_the_remembered_consent(
    world: World, browser: httpx.AsyncClient
) -> None:
    for _ in range(2):
        to_provider = await _federate(world, browser)
        back = await browser.get(await _at_provider(browser, to_provider.headers["location"], "bob"))
        if back.status_code == 200:  # first time: consent
            form = {"request": hidden_field(back.text, "request"), "csrf": hidden_field(back.text, "csrf")}
            back = await browser.post(f"{world.bastion.base_url}/oauth/consent", data={**form, "decision": "approve"})
        assert back.status_code == 302 and "code" in Redirect(back.headers["location"]).params
        browser.cookies.delete("bastion_login")  # sign in afresh through the provider next time
    user, _ = await _federated_user(world, "bob")
    assert user is not None and user.username == "idp:bob" and user.roles == []


async def test_a_callback_without_state_or_with_another_browsers_state_is_refused(
    world: World, browser: httpx.AsyncClient
) -> None:
    callback = f"{world.bastion.base_url}/oauth/federate/idp/callback"
    for query in ("?code=abc", "?code=abc&state=", "?code=abc&state=not-a-token"):
        refused = await browser.get(callback + query)
        assert refused.status_code == 403 and "no valid state" in refused.text
    to_provider = await _federate(world, browser)
    state = dict(parse_qsl(urlsplit(to_provider.headers["location"]).query))["state"]
    async with httpx.AsyncClient(follow_redirects=False) as attacker:  # the victim's state, not their cookie
        refused = await attacker.get(f"{callback}?code=abc&state={state}")
    assert refused.status_code == 403 and "no valid state" in refused.text
    other = f"{world.bastion.base_url}/oauth/federate/lookalike/callback?code=abc&state={state}"
    assert (await browser.get(other)).status_code == 403  # a state is for one provider only


async def test_an_id_token_for_another_nonce_is_refused(world: World, browser: httpx.AsyncClient) -> None:
    to_provider = await _federate(world, browser)
    tampered = _with_param(to_provider.headers["location"], nonce="a-nonce-this-browser-never-had")
    back = await browser.get(await _at_provider(browser, tampered, "carol"))
    assert back.status_code == 401 and "nonce does not match" in html.unescape(back.text)
    assert 'action="/oauth/login"' in back.text  # back on the sign-in page, which still works
    user, events = await _federated_user(world, "carol")
    assert user is None and any(e.outcome == "failure" for e in events)


async def test_a_person_who_cancels_at_the_provider_is_back_on_the_sign_in_page(
    world: World, browser: httpx.AsyncClient
) -> None:
    to_provider = await _federate(world, browser)
    back = await browser.get(await _at_provider(browser, to_provider.headers["location"], "", abort=True))
    assert back.status_code == 403 and "idp did not sign you in (access_denied)" in back.text


async def test_a_provider_whose_discovery_names_another_issuer_is_refused(
    world: World, browser: httpx.AsyncClient
) -> None:
    refused = await _federate(world, browser, provider="lookalike")
    assert refused.status_code == 502 and "Discovery §4.3" in html.unescape(refused.text)
    assert "location" not in refused.headers

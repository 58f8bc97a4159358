"""Per-user downstream OAuth (scenario B), end to end against a real OAuth-protected origin.

Two Bastions: B plays the origin's side (its virtual server `crm` is a protected MCP resource,
its authorization server issues the tokens, and the server behind `crm` receives a JWT naming
the B user each call was made for); A is the gateway under test, an OAuth client of B. People
connect through A's /connect pages and B's sign-in and consent pages, as a browser would.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from bastion.oauth.downstream_grants import GrantKey
from bastion.store.models import DownstreamGrant
from bastion.store.tenancy import SYSTEM
from bastion.vault.downstream_oauth import open_tokens
from bastion.vault.envelope import MasterKey, MasterKeys, VaultError
from bastion.vault.keys import encode_key
from bastion.web.session_api import session_csrf
from tests.governance.people import Person, add_person, call
from tests.harness import ADMIN_PASSWORD, STDIO_INVENTORY, Bastion, origin_process, run_bastion
from tests.oauth.flows import own_database, page_message
from tests.oauth_browser import Browser, hidden_field

pytestmark = pytest.mark.anyio

MASTER = MasterKey.generate("k1")
URL_ELICITATION_REQUIRED = -32042
TOKEN_IDS: dict[str, str] = {}  # API token → its id (what a person approves: `api-token:<id>`)


@dataclass
class World:
    a: Bastion  # the gateway
    b: Bastion  # the origin's authorization server and resource
    origin_id: str  # the origin `crm` at A
    log: Path  # what the server behind B's `crm` saw: one JSON line per request
    b_people: dict[str, Person]  # the same people's accounts at B


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("per-user-oauth")
    log = root / "backend.jsonl"
    with run_bastion(root / "b") as b:
        with origin_process("tests.origins.jwt_origin", "--issuer", b.base_url, "--log", str(log)) as backend:
            b.add_origin("backend", url=backend, auth={"mode": "jwt"})
            b.publish_server("crm", {"origin": "backend"})
            b_people = {name: add_person(b, f"{name}-at-b", ["member"]) for name in ("ann", "bob")}
            # Bastion's own requests (handshake, discovery) use a service client of B's, never a person's grant.
            service = b.ok("POST", "/api/oauth/clients", json={"name": "gateway A", "servers": ["crm"]})
            with run_bastion(root / "a", master_key=f"{MASTER.kid}:{encode_key(MASTER.key)}") as a:
                origin = a.ok(
                    "POST", "/api/origins", json={"name": "crm", "transport": "http", "url": b.mcp_url("crm")}
                )
                a.ok("POST", f"/api/origins/{origin['id']}/review", json={"decision": "approve"})
                auth = {
                    "mode": "oauth",
                    "scope": "mcp",
                    "service_client_id": service["client_id"],
                    "service_client_secret": service["client_secret"],
                }
                configured = a.ok("PUT", f"/api/origins/{origin['id']}/auth", json=auth)
                assert configured["auth_mode"] == "oauth", configured
                assert "secret" not in json.dumps(configured)
                found = a.ok("POST", f"/api/origins/{origin['id']}/refresh")
                assert found["last_error"] is None and found["items"], found
                a.publish_server("crm", {"origin": "crm"})
                yield World(a, b, origin["id"], log, b_people)


def _backend(world: World) -> list[dict[str, Any]]:
    return [json.loads(line) for line in world.log.read_text().splitlines()]


def _person(world: World, name: str) -> tuple[Person, str]:
    """A person at A with an API token for `crm`."""
    person = add_person(world.a, f"{name}-{time.monotonic_ns()}", ["member"])
    created = world.a.ok("POST", "/api/tokens", json={"name": "t", "servers": ["crm"], "user": person.name})
    TOKEN_IDS[created["token"]] = created["id"]
    return person, created["token"]


def _list_stock(world: World, token: str) -> dict[str, Any]:
    return call(world.a, "crm", token, "tools/call", name="list_stock", arguments={})


def _connect_url(reply: dict[str, Any]) -> str:
    error = reply["error"]
    assert error["code"] == URL_ELICITATION_REQUIRED, reply
    (elicitation,) = error["data"]["elicitations"]
    assert elicitation["mode"] == "url" and elicitation["url"] in error["message"]
    return str(elicitation["url"])


async def _connect(world: World, url: str, person: Person, at_b: Person) -> httpx.AsyncClient:
    """The person's part, in a browser: sign in at A, approve, sign in and consent at B, come back.
    Answers the browser's A side (its session cookie) for what the test does next."""
    browser = httpx.AsyncClient(follow_redirects=False, timeout=30)
    page = await browser.get(url)
    assert page.status_code == 200 and "Sign in to connect" in page.text, page.text
    path = urlsplit(url).path
    form = {"username": person.name, "password": ADMIN_PASSWORD, "ticket": hidden_field(page.text, "ticket")}
    page = await browser.post(f"{world.a.base_url}{path}/login", data=form)
    assert page.status_code == 200 and "Connect your account at crm?" in page.text, page.text
    assert world.b.base_url in page.text  # the consent page names the authorization server
    decision = {"ticket": hidden_field(page.text, "ticket"), "csrf": hidden_field(page.text, "csrf")}
    upstream = await browser.post(f"{world.a.base_url}{path}", data={**decision, "decision": "approve"})
    assert upstream.status_code == 303, upstream.text
    assert upstream.headers["location"].startswith(f"{world.b.base_url}/oauth/authorize?")
    at_b_browser = Browser(world.b.base_url)
    try:
        back = await at_b_browser.authorize(upstream.headers["location"], at_b.name, ADMIN_PASSWORD)
    finally:
        await at_b_browser.aclose()
    done = await browser.get(back.location)
    assert done.status_code == 200 and "Connected" in done.text, done.text
    return browser


async def test_two_people_each_call_with_their_own_token_and_never_the_other(world: World) -> None:
    (ann, ann_token), (bob, bob_token) = _person(world, "ann"), _person(world, "bob")
    url = _connect_url(_list_stock(world, ann_token))
    assert url.startswith(f"{world.a.base_url}/connect/{world.origin_id}?ticket=")
    browser = await _connect(world, url, ann, world.b_people["ann"])
    await browser.aclose()

    reply = _list_stock(world, ann_token)
    assert "result" in reply and not reply["result"].get("isError"), reply
    assert _backend(world)[-1]["sub"] == world.b_people["ann"].id  # B saw Ann's own account

    # Bob has connected nothing: Ann's connection is never lent to him.
    seen = len(_backend(world))
    bob_url = _connect_url(_list_stock(world, bob_token))
    assert len(_backend(world)) == seen  # nothing reached the origin for Bob
    browser = await _connect(world, bob_url, bob, world.b_people["bob"])
    await browser.aclose()
    assert "result" in _list_stock(world, bob_token)
    assert "result" in _list_stock(world, ann_token)
    calls = [entry["sub"] for entry in _backend(world)[seen:]]
    assert calls[-2:] == [world.b_people["bob"].id, world.b_people["ann"].id], calls
    # What reached B's side never included a token A issued.
    assert not any(t in world.log.read_text() for t in (ann_token, bob_token, world.a.admin_token))


async def test_a_link_made_for_one_person_does_not_connect_another(world: World) -> None:
    (_ann, ann_token), (bob, _bob_token) = _person(world, "ann"), _person(world, "bob")
    url = _connect_url(_list_stock(world, ann_token))
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as browser:
        page = await browser.get(url)
        form = {"username": bob.name, "password": ADMIN_PASSWORD, "ticket": hidden_field(page.text, "ticket")}
        refused = await browser.post(f"{world.a.base_url}{urlsplit(url).path}/login", data=form)
    assert refused.status_code == 403 and "another account" in page_message(refused)
    assert _list_stock(world, ann_token)["error"]["code"] == URL_ELICITATION_REQUIRED


async def test_the_consent_form_needs_its_csrf_token_and_a_state_works_once(world: World) -> None:
    ann, token = _person(world, "ann")
    url = _connect_url(_list_stock(world, token))
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as browser:
        page = await browser.get(url)
        form = {"username": ann.name, "password": ADMIN_PASSWORD, "ticket": hidden_field(page.text, "ticket")}
        page = await browser.post(f"{world.a.base_url}{urlsplit(url).path}/login", data=form)
        ticket = hidden_field(page.text, "ticket")
        forged = await browser.post(
            f"{world.a.base_url}{urlsplit(url).path}", data={"ticket": ticket, "csrf": "x" * 64, "decision": "approve"}
        )
        assert forged.status_code == 403 and "CSRF" in page_message(forged)
        # A callback with a state Bastion never stored (or one already used) is refused.
        stray = await browser.get(f"{world.a.base_url}/connect/{world.origin_id}/callback?code=c&state=nope")
        assert stray.status_code == 400 and "start again" in page_message(stray)
    assert _list_stock(world, token)["error"]["code"] == URL_ELICITATION_REQUIRED


async def _grants(world: World, person: Person) -> list[tuple[GrantKey, DownstreamGrant]]:
    async with own_database(world.a) as db, db.session(SYSTEM) as session:
        rows = (await session.scalars(select(DownstreamGrant).where(DownstreamGrant.user_id == person.id))).all()
        return [(GrantKey(r.tenant_id, r.user_id, r.origin_id, r.issuer, r.resource), r) for r in rows]


def _csrf(browser: httpx.AsyncClient) -> dict[str, str]:
    """What the connect page hands the browser: the CSRF token of the session its cookie holds."""
    payload = browser.cookies["bastion_session"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return {"x-csrf-token": session_csrf(claims)}


async def test_tokens_are_sealed_per_person_and_a_moved_ciphertext_does_not_open(world: World) -> None:
    people = [_person(world, name) for name in ("ann", "bob")]
    for (person, token), name in zip(people, ("ann", "bob"), strict=True):
        await (await _connect(world, _connect_url(_list_stock(world, token)), person, world.b_people[name])).aclose()
    ((ann_key, ann_row),), ((bob_key, _bob_row),) = [await _grants(world, p) for p, _ in people]
    keys = MasterKeys(MASTER)
    tokens = open_tokens(keys, ann_key.owner, ann_row.sealed)
    assert tokens.access_token not in ann_row.sealed and tokens.refresh_token
    with pytest.raises(VaultError):
        open_tokens(keys, bob_key.owner, ann_row.sealed)  # Ann's ciphertext in Bob's row opens for no one
    # The person's own view names the connection, never a token.
    async with httpx.AsyncClient(base_url=world.a.base_url) as browser:
        signed_in = await browser.post(
            "/auth/session", json={"username": people[0][0].name, "password": ADMIN_PASSWORD}
        )
        assert signed_in.status_code == 200
        (view,) = (await browser.get("/auth/connections")).json()
    assert view["origin_name"] == "crm" and view["status"] == "active" and view["issuer"] == world.b.base_url
    assert view["approved_clients"] == [f"api-token:{TOKEN_IDS[people[0][1]]}"]
    assert tokens.access_token not in json.dumps(view) and tokens.refresh_token not in json.dumps(view)


async def test_an_expiring_token_is_refreshed_just_in_time(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    ann, token = _person(world, "ann")
    await (await _connect(world, _connect_url(_list_stock(world, token)), ann, world.b_people["ann"])).aclose()
    ((key, before),) = await _grants(world, ann)
    old = open_tokens(MasterKeys(MASTER), key.owner, before.sealed)
    assert old.expires_at is not None
    # A's clock moves past the token's expiry; B's tokens and B's refresh endpoint are real.
    monkeypatch.setattr(world.a.services.grants, "_now", lambda: old.expires_at + 1)
    assert "result" in _list_stock(world, token)
    ((_, after),) = await _grants(world, ann)
    new = open_tokens(MasterKeys(MASTER), key.owner, after.sealed)
    assert after.version == before.version + 1 and after.status == "active"
    assert new.access_token != old.access_token and new.refresh_token != old.refresh_token  # B rotates
    assert _backend(world)[-1]["sub"] == world.b_people["ann"].id


async def test_disconnect_withdraws_the_grant_here_and_at_the_origins_server(world: World) -> None:
    ann, token = _person(world, "ann")
    browser = await _connect(world, _connect_url(_list_stock(world, token)), ann, world.b_people["ann"])
    ((key, row),) = await _grants(world, ann)
    refresh_token = open_tokens(MasterKeys(MASTER), key.owner, row.sealed).refresh_token
    assert "result" in _list_stock(world, token)
    try:
        without_csrf = await browser.delete(f"{world.a.base_url}/auth/connections/{world.origin_id}")
        assert without_csrf.status_code == 403
        gone = await browser.delete(f"{world.a.base_url}/auth/connections/{world.origin_id}", headers=_csrf(browser))
        assert gone.status_code == 204, gone.text
    finally:
        await browser.aclose()
    assert await _grants(world, ann) == []
    assert "connect your account" in _list_stock(world, token)["error"]["message"]
    # A revoked it at B too (RFC 7009): the refresh token no longer works there.
    async with httpx.AsyncClient() as http:
        refused = await http.post(
            f"{world.b.base_url}/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": row_client(world)},
        )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"


def row_client(world: World) -> str:
    spec = world.a.services.holder.current.origins[world.origin_id]
    assert spec.credential is not None and spec.credential.oauth is not None
    return spec.credential.oauth.client.client_id


async def test_a_grant_revoked_at_the_origin_needs_its_owner_again_and_no_one_else(world: World) -> None:
    (ann, ann_token), (bob, bob_token) = _person(world, "ann"), _person(world, "bob")
    for person, token, name in ((ann, ann_token, "ann"), (bob, bob_token, "bob")):
        await (await _connect(world, _connect_url(_list_stock(world, token)), person, world.b_people[name])).aclose()
    # Ann withdraws, at B, her consent for A's client: B revokes every token it gave A for her.
    async with httpx.AsyncClient(base_url=world.b.base_url) as at_b:
        body = {"username": world.b_people["ann"].name, "password": ADMIN_PASSWORD}
        csrf = (await at_b.post("/auth/session", json=body)).json()["csrf"]
        (consent,) = [c for c in (await at_b.get("/auth/consents")).json() if c["client_id"] == row_client(world)]
        assert (await at_b.delete(f"/auth/consents/{consent['id']}", headers={"x-csrf-token": csrf})).status_code == 204
    # B refuses the cached token (401); A refreshes once, B answers invalid_grant: Ann must reconnect.
    reply = _list_stock(world, ann_token)
    assert reply["error"]["code"] == URL_ELICITATION_REQUIRED and "connect it again" in reply["error"]["message"]
    ((_, row),) = await _grants(world, ann)
    assert row.status == "lost"
    # Bob's grant and the origin itself are untouched.
    assert "result" in _list_stock(world, bob_token)
    assert world.a.ok("GET", f"/api/origins/{world.origin_id}")["last_error"] is None


async def test_each_application_needs_its_owners_approval(world: World) -> None:
    ann, first = _person(world, "ann")
    await (await _connect(world, _connect_url(_list_stock(world, first)), ann, world.b_people["ann"])).aclose()
    second = world.a.ok("POST", "/api/tokens", json={"name": "other app", "servers": ["crm"], "user": ann.name})
    reply = _list_stock(world, second["token"])
    assert "approve this application" in reply["error"]["message"]
    assert "result" in _list_stock(world, first)


async def test_hybrid_one_server_composes_origins_that_each_keep_their_own_mode(world: World) -> None:
    """Scenario D: a local origin (no credential) and the per-user OAuth origin on one virtual server."""
    world.a.add_origin("local", command=STDIO_INVENTORY)
    picked = ["list_stock"]  # both offer the same resources: pick one tool of each
    world.a.publish_server(
        "hybrid",
        {"origin": "local", "prefix": "local.", "items": picked},
        {"origin": "crm", "prefix": "crm.", "items": picked},
    )
    ann, _ = _person(world, "ann")
    token = world.a.ok("POST", "/api/tokens", json={"name": "t", "servers": ["hybrid"], "user": ann.name})["token"]

    def tool(name: str) -> dict[str, Any]:
        return call(world.a, "hybrid", token, "tools/call", name=name, arguments={})

    assert "result" in tool("local.list_stock")  # no connection needed for the local origin
    url = _connect_url(tool("crm.list_stock"))  # the OAuth origin asks for Ann's own account
    await (await _connect(world, url, ann, world.b_people["ann"])).aclose()
    assert "result" in tool("crm.list_stock") and "result" in tool("local.list_stock")
    assert _backend(world)[-1]["sub"] == world.b_people["ann"].id


async def test_a_form_posted_from_another_site_is_refused(world: World) -> None:
    """Login CSRF: another site cannot sign the victim's browser in as the attacker (whose link it holds)."""
    attacker, token = _person(world, "mallory")
    url = _connect_url(_list_stock(world, token))
    async with httpx.AsyncClient(follow_redirects=False, timeout=30) as victim:
        page = await victim.get(url)
        form = {"username": attacker.name, "password": ADMIN_PASSWORD, "ticket": hidden_field(page.text, "ticket")}
        posted = await victim.post(
            f"{world.a.base_url}{urlsplit(url).path}/login", data=form, headers={"origin": "https://evil.example"}
        )
        assert posted.status_code == 403 and "another site" in page_message(posted)
        assert "bastion_session" not in victim.cookies


def test_without_a_master_key_nothing_is_registered_at_the_origins_server(
    world: World, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Mode oauth registers Bastion at the origin's authorization server: a registration Bastion
    could not keep (no vault to seal it in) is not made at all."""
    before = len(world.b.ok("GET", "/api/oauth/clients/registered"))
    with run_bastion(tmp_path_factory.mktemp("no-vault")) as c:
        origin = c.ok("POST", "/api/origins", json={"name": "crm", "transport": "http", "url": world.b.mcp_url("crm")})
        refused = c.api("PUT", f"/api/origins/{origin['id']}/auth", json={"mode": "oauth", "scope": "mcp"})
    assert refused.status_code == 400 and "no master key" in refused.json()["error"]["message"]
    assert len(world.b.ok("GET", "/api/oauth/clients/registered")) == before

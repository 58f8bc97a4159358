"""Console pages for users, teams and roles; OAuth clients; and the signed-in person's own account.

Each test drives the pages over real HTTP as a browser would (forms with the session's CSRF token)
and checks the outcome through the admin API, the OAuth endpoints or the MCP endpoint.
"""

from __future__ import annotations

import html
import re
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import select

from bastion.store.models import DownstreamGrant, Origin
from bastion.store.tenancy import SYSTEM
from tests.console.client import Console, inline_errors
from tests.harness import Bastion
from tests.oauth.flows import Flow, Tokens, mcp_request, own_database, publish_demo

PASSWORD = "a long enough password 123"


def nav_labels(page: str) -> list[str]:
    """The sections the sidebar offers."""
    nav = page.split('<nav class="sidebar"', 1)[1].split("</nav>", 1)[0]
    return re.findall(r'<li><a href="[^"]+"[^>]*>([^<]+)</a></li>', nav)


def errors_of(page: str) -> str:
    return html.unescape(" | ".join(inline_errors(page)))


def api_user(gateway: Bastion, username: str) -> dict[str, Any]:
    found: dict[str, Any] = next(u for u in gateway.ok("GET", "/api/users") if u["username"] == username)
    return found


def add_user(gateway: Bastion, username: str, *roles: str) -> dict[str, Any]:
    body = {"username": username, "password": PASSWORD, "roles": list(roles or ["member"])}
    created: dict[str, Any] = gateway.ok("POST", "/api/users", json=body)
    return created


# --- users, teams, roles --------------------------------------------------------------------------


def test_a_user_created_with_the_form_holds_its_roles_and_teams(console: Console, gateway: Bastion) -> None:
    page = console.get("/admin/users")
    assert page.status_code == 200 and "Create user" in page.text and "Create team" in page.text
    team = console.post("/admin/users/teams", {"name": "support", "members": ""})
    assert team.status_code == 303 and team.headers["location"] == "/admin/users?notice=team-created#teams"

    created = console.post(
        "/admin/users",
        {"username": "ada", "password": PASSWORD, "roles": ["auditor", "member"], "teams": ["support"]},
    )
    assert created.status_code == 303, created.text
    shown = console.get(created.headers["location"])
    assert "The user is created." in shown.text and "ada" in shown.text

    ada = api_user(gateway, "ada")
    (support,) = [t for t in gateway.ok("GET", "/api/teams") if t["name"] == "support"]
    assert ada["roles"] == ["auditor", "member"] and ada["teams"] == [support["id"]]
    assert support["members"] == [ada["id"]]
    # The password set on the form is the one that signs in.
    login = gateway.http.post("/api/login", json={"username": "ada", "password": PASSWORD})
    assert login.status_code == 200


def test_invalid_user_input_is_shown_inline_and_nothing_is_written(console: Console, gateway: Bastion) -> None:
    before = gateway.ok("GET", "/api/users")

    bad_name = console.post("/admin/users", {"username": "not valid!", "password": PASSWORD, "roles": "member"})
    assert bad_name.status_code == 422
    assert "should match pattern" in errors_of(bad_name.text)
    assert PASSWORD not in bad_name.text  # the password is never echoed back
    assert 'value="not valid!"' in bad_name.text  # what was typed stays in the form

    unknown_role = console.post("/admin/users", {"username": "bo", "password": PASSWORD, "roles": ["wizard"]})
    assert unknown_role.status_code == 422 and "unknown roles: wizard" in errors_of(unknown_role.text)

    weak = console.post("/admin/users", {"username": "cy", "password": "short", "roles": "member"})
    assert weak.status_code == 422 and "at least 12 characters" in errors_of(weak.text)

    unknown_team = console.post("/admin/users", {"username": "di", "password": PASSWORD, "teams": "nowhere"})
    assert unknown_team.status_code == 422 and "nowhere" in errors_of(unknown_team.text)

    forged = console.http.post("/admin/users", data={"username": "eve", "password": PASSWORD, "csrf": "0" * 64})
    assert forged.status_code == 403 and "CSRF" in forged.text

    assert gateway.ok("GET", "/api/users") == before


def test_a_users_roles_and_teams_are_edited_and_an_unknown_role_refused(console: Console, gateway: Bastion) -> None:
    user = add_user(gateway, "ben", "member")
    gateway.ok("POST", "/api/teams", json={"name": "ops"})

    form = console.get(f"/admin/users/{user['id']}/edit")
    assert form.status_code == 200 and "Save" in form.text
    assert 'value="member" checked' in form.text and 'value="auditor">' in form.text

    wrong = console.post(f"/admin/users/{user['id']}/edit", {"roles": ["auditor", "wizard"], "teams": "ops"})
    assert wrong.status_code == 422 and "unknown roles: wizard" in errors_of(wrong.text)
    assert 'value="auditor" checked' in wrong.text  # the choice stays ticked
    assert api_user(gateway, "ben")["roles"] == ["member"]

    saved = console.post(f"/admin/users/{user['id']}/edit", {"roles": ["auditor", "publisher"], "teams": "ops"})
    assert saved.status_code == 303 and saved.headers["location"] == "/admin/users?notice=user-saved"
    ben = api_user(gateway, "ben")
    (ops,) = [t for t in gateway.ok("GET", "/api/teams") if t["name"] == "ops"]
    assert ben["roles"] == ["auditor", "publisher"] and ben["teams"] == [ops["id"]]

    assert console.get("/admin/users/no-such-user/edit").status_code == 404


def test_saving_the_first_administrators_form_keeps_their_platform_admin(console: Console, gateway: Bastion) -> None:
    """Their platform-admin is a flag the roles form does not show: saving the form (a team added)
    neither takes it nor is refused as taking it."""
    gateway.ok("POST", "/api/teams", json={"name": "admins-team"})
    admin = api_user(gateway, gateway.settings.admin_user)
    saved = console.post(f"/admin/users/{admin['id']}/edit", {"roles": admin["roles"], "teams": "admins-team"})
    assert saved.status_code == 303, saved.text
    after = api_user(gateway, gateway.settings.admin_user)
    assert after["is_admin"] is True and len(after["teams"]) == 1
    assert gateway.api("GET", "/api/tenants").status_code == 200  # still a platform administrator


@pytest.mark.parametrize("gateway", [{"lockout_account_threshold": 3}], indirect=True)
def test_a_locked_account_is_shown_and_unlocked(console: Console, gateway: Bastion) -> None:
    user = add_user(gateway, "lou")
    for _ in range(gateway.settings.lockout_account_threshold):
        gateway.http.post("/api/login", json={"username": "lou", "password": "wrong password, again"})
    assert api_user(gateway, "lou")["locked_until"] is not None
    assert gateway.http.post("/api/login", json={"username": "lou", "password": PASSWORD}).status_code == 401

    page = console.get("/admin/users").text
    row = page.split("<td>lou", 1)[1].split("</tr>", 1)[0]
    assert "locked" in row and f'action="/admin/users/{user["id"]}/unlock"' in row and "Unlock" in row

    unlocked = console.post(f"/admin/users/{user['id']}/unlock", follow_redirects=True)
    assert unlocked.status_code == 200 and "The account is unlocked" in unlocked.text
    lou = api_user(gateway, "lou")
    assert lou["locked_until"] is None and lou["failed_logins"] == 0
    assert gateway.http.post("/api/login", json={"username": "lou", "password": PASSWORD}).status_code == 200


def test_teams_are_created_given_members_and_deleted(console: Console, gateway: Bastion) -> None:
    ann, bob = add_user(gateway, "ann"), add_user(gateway, "bob")

    unknown = console.post("/admin/users/teams", {"name": "crew", "members": "ann\nghost"})
    assert unknown.status_code == 422 and "ghost" in errors_of(unknown.text)
    bad_name = console.post("/admin/users/teams", {"name": "no spaces", "members": ""})
    assert bad_name.status_code == 422 and inline_errors(bad_name.text)
    assert gateway.ok("GET", "/api/teams") == []

    assert console.post("/admin/users/teams", {"name": "crew", "members": "ann\n\n"}).status_code == 303
    (crew,) = gateway.ok("GET", "/api/teams")
    assert crew["members"] == [ann["id"]]
    page = console.get("/admin/users").text
    assert "People in crew" in page and f"/admin/users/teams/{crew['id']}/delete" in page

    wrong = console.post(f"/admin/users/teams/{crew['id']}/members", {"members": "bob\nnobody"})
    assert wrong.status_code == 422 and "nobody" in errors_of(wrong.text)
    assert gateway.ok("GET", "/api/teams")[0]["members"] == [ann["id"]]

    saved = console.post(f"/admin/users/teams/{crew['id']}/members", {"members": "bob\nann"})
    assert saved.status_code == 303 and "notice=team-saved" in saved.headers["location"]
    assert sorted(gateway.ok("GET", "/api/teams")[0]["members"]) == sorted([ann["id"], bob["id"]])
    assert api_user(gateway, "bob")["teams"] == [crew["id"]]

    deleted = console.post(f"/admin/users/teams/{crew['id']}/delete", follow_redirects=True)
    assert deleted.status_code == 200 and "The team is deleted." in deleted.text
    assert gateway.ok("GET", "/api/teams") == []


def test_custom_roles_are_created_checked_and_deleted(console: Console, gateway: Bastion) -> None:
    page = console.get("/admin/users").text
    assert "Create role" in page and "tools:call" in page  # built-in roles with their permissions

    unknown = console.post(
        "/admin/users/roles", {"name": "helpdesk", "description": "", "permissions": "users:read\nfly:planes"}
    )
    assert unknown.status_code == 422
    assert "unknown action 'fly:planes'" in errors_of(unknown.text)
    assert 'class="field invalid">\n  <label><span>Permissions (one per line)' in unknown.text  # at the field
    none = console.post("/admin/users/roles", {"name": "helpdesk", "permissions": ""})
    assert none.status_code == 422 and inline_errors(none.text)
    builtin = console.post("/admin/users/roles", {"name": "auditor", "permissions": "users:read"})
    assert builtin.status_code == 422 and "built-in" in errors_of(builtin.text)
    assert all(r["builtin"] for r in gateway.ok("GET", "/api/roles"))  # nothing was created

    created = console.post(
        "/admin/users/roles",
        {"name": "helpdesk", "description": "first line", "permissions": "users:read\ntools:call@server:demo\n"},
    )
    assert created.status_code == 303 and "notice=role-created" in created.headers["location"]
    (role,) = [r for r in gateway.ok("GET", "/api/roles") if r["name"] == "helpdesk"]
    assert role["permissions"] == ["users:read", "tools:call@server:demo"] and role["description"] == "first line"
    # The new role is offered to users at once.
    assert 'name="roles" value="helpdesk"' in console.get("/admin/users").text

    deleted = console.post("/admin/users/roles/helpdesk/delete", follow_redirects=True)
    assert deleted.status_code == 200 and "The role is deleted" in deleted.text
    assert all(r["name"] != "helpdesk" for r in gateway.ok("GET", "/api/roles"))


def test_an_auditor_reads_users_but_gets_no_forms(gateway: Bastion) -> None:
    add_user(gateway, "audrey", "auditor")
    auditor = Console(gateway, "audrey", PASSWORD)
    try:
        page = auditor.get("/admin/users")
        assert page.status_code == 200 and "audrey" in page.text
        for form in ("Create user", "Create team", "Create role", "/edit", "Unlock"):
            assert form not in page.text, form
        refused = auditor.post("/admin/users", {"username": "sneaky", "password": PASSWORD})
        assert refused.status_code == 403 and "users:manage" in refused.text
        assert all(u["username"] != "sneaky" for u in gateway.ok("GET", "/api/users"))
    finally:
        auditor.close()


# --- OAuth clients ---------------------------------------------------------------------------------


def test_a_service_client_secret_is_shown_once_and_works_until_deleted(console: Console, gateway: Bastion) -> None:
    publish_demo(gateway, "demo")
    form = console.get("/admin/clients")
    assert form.status_code == 200 and "Create client" in form.text and 'value="demo"' in form.text

    created = console.post(
        "/admin/clients",
        {
            "name": "nightly",
            "servers": ["demo"],
            "scopes": ["mcp:read"],
            "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "client_secret_basic",
        },
    )
    assert created.status_code == 201 and "no-store" in created.headers["cache-control"]
    client_id = created.text.split('<pre id="new-client-id">', 1)[1].split("</pre>", 1)[0]
    secret = created.text.split('<pre id="new-client-secret">', 1)[1].split("</pre>", 1)[0]
    assert secret.startswith("bst_cs_")

    (listed,) = [c for c in gateway.ok("GET", "/api/oauth/clients") if c["client_id"] == client_id]
    assert listed["kind"] == "service" and listed["scope"] == "mcp:read" and len(listed["server_ids"]) == 1
    page = console.get("/admin/clients").text
    assert "nightly" in page and client_id in page and secret not in page  # never shown again

    # The command the page shows, as a client would send it.
    assert f"-u '{client_id}:{secret}'" in created.text and f"resource='{gateway.mcp_url('demo')}'" in created.text

    def token_request() -> httpx.Response:
        form = {"grant_type": "client_credentials", "resource": gateway.mcp_url("demo")}
        return gateway.http.post("/oauth/token", data=form, auth=(client_id, secret))

    granted = token_request()
    assert granted.status_code == 200 and granted.json()["scope"] == "mcp:read", granted.text
    access = granted.json()["access_token"]
    assert anyio.run(_mcp_status, gateway, access) == 200

    deleted = console.post(f"/admin/clients/{client_id}/delete", follow_redirects=True)
    assert deleted.status_code == 200 and "The client is deleted" in deleted.text
    assert all(c["client_id"] != client_id for c in gateway.ok("GET", "/api/oauth/clients"))
    assert token_request().status_code == 401
    assert anyio.run(_mcp_status, gateway, access) == 401  # its tokens are revoked with it
    assert console.post(f"/admin/clients/{client_id}/delete").status_code == 404


def test_service_client_errors_are_inline_and_nothing_is_created(console: Console, gateway: Bastion) -> None:
    publish_demo(gateway, "demo")
    no_server = console.post("/admin/clients", {"name": "", "scopes": "mcp", "grant_types": "client_credentials"})
    assert no_server.status_code == 422 and len(inline_errors(no_server.text)) >= 2
    bad_scope = console.post(
        "/admin/clients", {"name": "x", "servers": "demo", "scopes": "admin", "grant_types": "client_credentials"}
    )
    assert bad_scope.status_code == 422 and inline_errors(bad_scope.text)
    unknown = console.post(
        "/admin/clients",
        {"name": "x", "servers": "demo", "owner": "nobody", "scopes": "mcp", "grant_types": "client_credentials"},
    )
    assert unknown.status_code == 422 and "nobody" in errors_of(unknown.text)
    assert gateway.ok("GET", "/api/oauth/clients") == []


def test_platform_admins_see_and_delete_registered_applications_and_tenant_admins_do_not(
    console: Console, gateway: Bastion
) -> None:
    body = {"client_name": "Desktop agent", "redirect_uris": ["http://127.0.0.1:4000/cb"]}
    client_id = gateway.http.post("/oauth/register", json=body).json()["client_id"]
    listed = console.get("/admin/clients")
    assert client_id in listed.text and "Desktop agent" in listed.text
    gateway.ok("POST", "/api/users", json={"username": "tina", "password": PASSWORD, "roles": ["tenant-admin"]})
    tina = Console(gateway, "tina", PASSWORD)
    try:
        assert client_id not in tina.get("/admin/clients").text
        assert tina.post(f"/admin/clients/{client_id}/delete").status_code == 404
    finally:
        tina.close()
    deleted = console.post(f"/admin/clients/{client_id}/delete")
    assert deleted.status_code == 303
    assert client_id not in {c["client_id"] for c in gateway.ok("GET", "/api/oauth/clients/registered")}


# --- a member, and their own account ---------------------------------------------------------------


def test_a_member_sees_their_account_and_tokens_only(gateway: Bastion) -> None:
    gateway.ok("POST", "/api/users", json={"username": "mia", "password": PASSWORD, "roles": ["member"]})
    mia = Console(gateway, "mia", PASSWORD)
    try:
        account = mia.get("/admin/account")
        assert account.status_code == 200
        assert "mia" in account.text and '<span class="badge">member</span>' in account.text
        assert "You have not allowed any application yet." in account.text
        assert "You have no connected accounts." in account.text
        assert nav_labels(account.text) == ["API tokens", "My account"]
        assert mia.get("/admin/tokens").status_code == 200

        for path in ("/admin/users", "/admin/clients", f"/admin/users/{api_user(gateway, 'admin')['id']}/edit"):
            refused = mia.get(path)
            assert refused.status_code == 403, path
            assert nav_labels(refused.text) == ["API tokens", "My account"]
        made = mia.post("/admin/clients", {"name": "x", "servers": "demo"})
        assert made.status_code == 403 and gateway.ok("GET", "/api/oauth/clients") == []
        role = mia.post("/admin/users/roles", {"name": "mine", "permissions": "users:manage"})
        assert role.status_code == 403 and all(r["name"] != "mine" for r in gateway.ok("GET", "/api/roles"))
    finally:
        mia.close()


async def _consent(gateway: Bastion) -> Tokens:
    async with Flow(gateway) as flow:
        return await flow.tokens()


async def _mcp_status(gateway: Bastion, token: str) -> int:
    async with httpx.AsyncClient(timeout=30) as http:
        return (await mcp_request(http, gateway.mcp_url("demo"), token)).status_code


def test_a_consent_is_listed_and_withdrawn_on_the_account_page(console: Console, gateway: Bastion) -> None:
    publish_demo(gateway, "demo")
    tokens = anyio.run(_consent, gateway)  # the admin allows an application through the OAuth flow
    assert anyio.run(_mcp_status, gateway, tokens.access_token) == 200

    page = console.get("/admin/account").text
    row = page.split("<td>Flow test client", 1)[1].split("</tr>", 1)[0]
    assert tokens.client_id in row and "<td>demo</td>" in row and "<td>mcp</td>" in row and "Withdraw" in row
    (consent,) = console.get("/auth/consents").json()

    # Another person cannot withdraw it (nor see it).
    add_user(gateway, "mia")
    mia = Console(gateway, "mia", PASSWORD)
    try:
        assert "Flow test client" not in mia.get("/admin/account").text
        assert mia.post(f"/admin/account/consents/{consent['id']}/withdraw").status_code == 404
    finally:
        mia.close()
    assert anyio.run(_mcp_status, gateway, tokens.access_token) == 200

    withdrawn = console.post(f"/admin/account/consents/{consent['id']}/withdraw", follow_redirects=True)
    assert withdrawn.status_code == 200 and "The consent is withdrawn" in withdrawn.text
    assert "You have not allowed any application yet." in withdrawn.text
    assert console.get("/auth/consents").json() == []
    assert anyio.run(_mcp_status, gateway, tokens.access_token) == 401


async def _seed_connection(gateway: Bastion, user_id: str) -> str:
    """A stored connection of `user_id` to the origin `inventory`, as /connect's callback leaves one.
    (A real one needs a second Bastion as the origin's authorization server: tests/vault covers that.)"""
    async with own_database(gateway) as db, db.session(SYSTEM) as session:
        origin = await session.scalar(select(Origin).where(Origin.name == "inventory"))
        assert origin is not None
        session.add(
            DownstreamGrant(
                user_id=user_id,
                origin_id=origin.id,
                issuer="https://as.example",
                resource="https://as.example/mcp",
                sealed="not-a-real-ciphertext",
                scope="crm.read",
            )
        )
        return str(origin.id)


def test_a_connected_account_is_listed_and_disconnected(console: Console, gateway: Bastion) -> None:
    publish_demo(gateway, "demo")
    assert "You have no connected accounts." in console.get("/admin/account").text
    origin_id = anyio.run(_seed_connection, gateway, api_user(gateway, "admin")["id"])

    page = console.get("/admin/account").text
    row = page.split("<td>inventory</td>", 1)[1].split("</tr>", 1)[0]
    assert "https://as.example" in row and "crm.read" in row and "connected" in row and "Disconnect" in row
    assert [c["origin_id"] for c in console.get("/auth/connections").json()] == [origin_id]

    done = console.post(f"/admin/account/connections/{origin_id}/disconnect", follow_redirects=True)
    assert done.status_code == 200 and "The account is disconnected" in done.text
    assert "You have no connected accounts." in done.text
    assert console.get("/auth/connections").json() == []
    assert console.post(f"/admin/account/connections/{origin_id}/disconnect").status_code == 404

"""`tokens:manage` lets one act as another user of the tenant (mint their API token, own a service
client for them), but never as someone who holds more than oneself: a tenant administrator cannot
become a platform administrator that way, nor a token desk a tenant admin. Revoking anyone's token
it allows (that only takes power away)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.governance.people import Person, add_person, as_person, mcp
from tests.harness import STDIO_INVENTORY, Bastion, run_bastion

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"


@pytest.fixture(scope="module")
def bastion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("acting-as")) as gateway:
        gateway.add_origin("inventory", command=STDIO_INVENTORY)
        gateway.publish_server("demo", {"origin": "inventory"})
        gateway.ok("POST", "/api/roles", json={"name": "token-desk", "permissions": ["tokens:create", "tokens:manage"]})
        yield gateway


@pytest.fixture(scope="module")
def tia(bastion: Bastion) -> Person:
    return add_person(bastion, "tia", ["tenant-admin"])


@pytest.fixture(scope="module")
def tess(bastion: Bastion) -> Person:
    return add_person(bastion, "tess", ["token-desk"])


@pytest.fixture(scope="module")
def mo(bastion: Bastion) -> Person:
    return add_person(bastion, "mo", ["member"])


def _token_for(bastion: Bastion, actor: Person, user: str, scopes: list[str]) -> tuple[int, str]:
    body = {"name": "as-" + user, "servers": ["demo"], "user": user, "scopes": scopes}
    response = as_person(bastion, actor, "POST", "/api/tokens", json=body)
    return response.status_code, response.text


def test_a_tenant_admin_acts_for_a_member_but_not_as_the_platform_administrator(
    bastion: Bastion, tia: Person, mo: Person
) -> None:
    assert _token_for(bastion, tia, mo.name, ["mcp"])[0] == 201
    status, text = _token_for(bastion, tia, "admin", ["admin"])
    assert status == 403 and "platform administrator" in text
    client = {"name": "as admin", "servers": ["demo"], "owner": "admin"}
    refused = as_person(bastion, tia, "POST", "/api/oauth/clients", json=client)
    assert refused.status_code == 403 and "platform administrator" in refused.text
    # Revoking takes power away only: a leaked token of the platform administrator's is revocable.
    theirs = bastion.ok("POST", "/api/tokens", json={"name": "admin's own", "servers": ["demo"]})
    revoked = as_person(bastion, tia, "POST", f"/api/tokens/{theirs['id']}/revoke")
    assert revoked.status_code == 200, revoked.text
    assert [t["revoked_at"] is not None for t in bastion.ok("GET", "/api/tokens") if t["id"] == theirs["id"]] == [True]


def test_a_token_desk_acts_only_for_users_who_hold_nothing_more_than_it(
    bastion: Bastion, tess: Person, tia: Person, mo: Person
) -> None:
    add_person(bastion, "newbie", [])
    assert _token_for(bastion, tess, "newbie", ["mcp"])[0] == 201
    for above in ("tia", "mo"):  # a tenant admin, and a member (who may call tools: the desk may not)
        status, text = _token_for(bastion, tess, above, ["admin"])
        assert status == 403 and "holds what you do not" in text, (above, text)
    # The platform administrator acts for anyone.
    assert bastion.ok("POST", "/api/tokens", json={"name": "x", "servers": ["demo"], "user": "tia"})["token"]


def test_a_token_minted_for_someone_does_not_grow_with_their_next_promotion(bastion: Bastion, tess: Person) -> None:
    """A token acts with its user's current roles: one minted by someone else is limited to what the
    minter held, or it would hand them whatever the user is given next."""
    grower = add_person(bastion, "grower", [])
    body = {"name": "desk-made", "servers": ["demo"], "user": grower.name, "scopes": ["admin"]}
    created = as_person(bastion, tess, "POST", "/api/tokens", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["permissions"] == ["tokens:create", "tokens:manage"]  # the desk's own
    bastion.ok("PATCH", f"/api/users/{grower.id}", json={"roles": ["tenant-admin"]})
    desk_made = {"authorization": f"Bearer {created.json()['token']}"}
    assert bastion.http.get("/api/users", headers=desk_made).status_code == 403  # not the tenant admin's power
    assert as_person(bastion, grower, "GET", "/api/users").status_code == 200  # the user's own login has it
    plain = add_person(bastion, "plain", [])
    wider = {**body, "name": "wider", "user": plain.name, "permissions": ["users:read"]}
    refused = as_person(bastion, tess, "POST", "/api/tokens", json=wider)
    assert refused.status_code == 403 and "cannot carry what you do not hold" in refused.text


def test_a_limited_token_mints_for_someone_else_within_both_its_limit_and_its_holders_roles(
    bastion: Bastion, tess: Person
) -> None:
    own = {"name": "desk's own", "servers": ["demo"], "scopes": ["admin"]}
    own["permissions"] = ["tokens:create", "tokens:manage", "users:read"]  # wider than the desk's roles
    limited = as_person(bastion, tess, "POST", "/api/tokens", json=own)
    assert limited.status_code == 201, limited.text
    other = add_person(bastion, "other-newbie", [])
    body = {"name": "through a limited token", "servers": ["demo"], "user": other.name, "scopes": ["admin"]}
    headers = {"authorization": f"Bearer {limited.json()['token']}"}
    minted = bastion.http.post("/api/tokens", json=body, headers=headers)
    assert minted.status_code == 201, minted.text
    assert minted.json()["permissions"] == ["tokens:create", "tokens:manage"]  # what both the limit and the roles allow


def test_a_service_client_set_up_for_someone_does_not_grow_with_their_next_promotion(bastion: Bastion) -> None:
    bastion.ok("POST", "/api/roles", json={"name": "client-desk", "permissions": ["clients:manage", "tokens:manage"]})
    desk = add_person(bastion, "cleo", ["client-desk"])
    bot = add_person(bastion, "bot-owner", [])
    body = {"name": "desk-made bot", "servers": ["demo"], "owner": bot.name}
    created = as_person(bastion, desk, "POST", "/api/oauth/clients", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["permissions"] == ["clients:manage", "tokens:manage"]  # the desk's own
    bastion.ok("PATCH", f"/api/users/{bot.id}", json={"roles": ["member"]})  # may call tools from now on
    form = {"grant_type": "client_credentials", "resource": bastion.mcp_url("demo")}
    issued = bastion.http.post(
        "/oauth/token", data=form, auth=(created.json()["client_id"], created.json()["client_secret"])
    )
    assert issued.status_code == 200, issued.text
    token = issued.json()["access_token"]
    refused = mcp(bastion, "demo", token, "tools/call", name="list_stock", arguments={})
    assert "your roles do not allow this tool" in refused.json()["error"]["message"], refused.text
    assert mcp(bastion, "demo", bastion.token("demo"), "tools/call", name="list_stock", arguments={}).json()["result"]
    # Nor through a token exchange by a client of the desk's own: the new token would carry the
    # exchanging client's (no) limit, so a limited token is not exchanged.
    exchanging = {"name": "desk's exchanger", "servers": ["demo"], "grant_types": [EXCHANGE]}
    own = as_person(bastion, desk, "POST", "/api/oauth/clients", json=exchanging)
    assert own.status_code == 201, own.text
    form = {"grant_type": EXCHANGE, "subject_token": token, "subject_token_type": ACCESS_TOKEN}
    traded = bastion.http.post("/oauth/token", data=form, auth=(own.json()["client_id"], own.json()["client_secret"]))
    assert traded.status_code == 400 and traded.json()["error"] == "invalid_request", traded.text
    assert "limited to what its client's creator may do" in traded.json()["error_description"]


def test_without_users_manage_one_acts_only_for_people_who_see_nothing_one_cannot(
    bastion: Bastion, tess: Person, tia: Person
) -> None:
    """Roles are not all a person sees: their teams' servers and origins, and the ones they own. A token
    desk (no users:manage) is not in the finance team and owns nothing: it may not act for someone
    who is, or does. A tenant administrator, who could join any team, may act for the one in a team
    and for an owner of tenant-wide things, never for the owner of something private: only its
    owner reaches that, and no role makes one its owner."""
    bastion.ok("POST", "/api/teams", json={"name": "finance"})
    add_person(bastion, "fin", [], teams=["finance"])
    status, text = _token_for(bastion, tess, "fin", ["mcp"])
    assert status == 403 and "in a team you are not in" in text, text
    owner = add_person(bastion, "owen", ["publisher"])
    private = {"slug": "owens", "visibility": "private"}
    assert as_person(bastion, owner, "POST", "/api/servers", json=private).status_code == 201
    bastion.ok("PATCH", f"/api/users/{owner.id}", json={"roles": []})  # holds nothing now, owns still
    status, text = _token_for(bastion, tess, "owen", ["mcp"])
    assert status == 403 and "owns servers or origins of their own" in text, text
    status, text = _token_for(bastion, tia, "owen", ["mcp"])
    assert status == 403 and "owns private servers or origins of their own" in text, text
    client = {"name": "as owen", "servers": ["demo"], "owner": "owen"}
    refused = as_person(bastion, tia, "POST", "/api/oauth/clients", json=client)
    assert refused.status_code == 403 and "owns private servers or origins" in refused.text, refused.text
    sharer = add_person(bastion, "shay", ["publisher"])
    assert as_person(bastion, sharer, "POST", "/api/servers", json={"slug": "shays"}).status_code == 201
    bastion.ok("PATCH", f"/api/users/{sharer.id}", json={"roles": []})  # owns a tenant-wide server
    assert _token_for(bastion, tess, "shay", ["mcp"])[0] == 403
    for person in ("fin", "shay"):
        assert _token_for(bastion, tia, person, ["mcp"])[0] == 201


def test_a_helpdesk_unlocks_and_regroups_only_people_at_its_level(bastion: Bastion, tia: Person) -> None:
    """users:manage alone does not reach above its holder: lifting a platform administrator's lockout
    (while someone guesses their password) or taking a tenant administrator out of a team is refused."""
    bastion.ok("POST", "/api/roles", json={"name": "helpdesk", "permissions": ["users:manage", "users:read"]})
    desk = add_person(bastion, "hana", ["helpdesk"])
    plain = add_person(bastion, "pat", [])
    bastion.ok("POST", "/api/teams", json={"name": "support"})
    admin_id = next(u["id"] for u in bastion.ok("GET", "/api/users") if u["username"] == "admin")
    refused = as_person(bastion, desk, "POST", f"/api/users/{admin_id}/unlock")
    assert refused.status_code == 403 and "only another may unlock them" in refused.text, refused.text
    for change in ({"teams": ["support"]},):
        above = as_person(bastion, desk, "PATCH", f"/api/users/{tia.id}", json=change)
        assert above.status_code == 403 and "cannot change their teams" in above.text, above.text
        assert as_person(bastion, desk, "PATCH", f"/api/users/{plain.id}", json=change).status_code == 200
    members = as_person(bastion, desk, "PUT", "/api/teams/support/members", json={"members": [tia.id]})
    assert members.status_code == 403 and "cannot change their teams" in members.text, members.text
    assert as_person(bastion, desk, "POST", f"/api/users/{plain.id}/unlock").status_code == 200
    bastion.ok("POST", "/api/teams", json={"name": "leads", "members": [tia.id]})
    deleted = as_person(bastion, desk, "DELETE", "/api/teams/leads")
    assert deleted.status_code == 403 and "cannot change their teams" in deleted.text, deleted.text


def test_the_first_administrators_flag_is_taken_explicitly_and_never_from_the_last_one(tmp_path: Path) -> None:
    """The first administrator's platform-admin is a flag that holds whatever roles are set (a form
    that shows roles only must not take it): `is_admin: false` takes it, never from the last one."""
    with run_bastion(tmp_path) as gateway:
        admin_id = next(u["id"] for u in gateway.ok("GET", "/api/users") if u["username"] == "admin")
        kept = gateway.api("PATCH", f"/api/users/{admin_id}", json={"roles": ["member"], "teams": []})
        assert kept.status_code == 200 and kept.json()["is_admin"] is True, kept.text
        assert gateway.api("GET", "/api/users").status_code == 200  # still a platform administrator
        last = gateway.api("PATCH", f"/api/users/{admin_id}", json={"is_admin": False})
        assert last.status_code == 409 and "last platform administrator" in last.text
        other = add_person(gateway, "second", ["platform-admin"])
        tenant_admin = add_person(gateway, "third", ["tenant-admin"])
        refused = as_person(gateway, tenant_admin, "PATCH", f"/api/users/{admin_id}", json={"is_admin": False})
        assert refused.status_code == 403, refused.text
        taken = as_person(gateway, other, "PATCH", f"/api/users/{admin_id}", json={"is_admin": False})
        assert taken.status_code == 200 and taken.json()["is_admin"] is False, taken.text
        assert gateway.api("GET", "/api/users").status_code == 403  # a member now: the role is gone
        # The last holder of the role cannot have it taken either.
        alone = as_person(gateway, other, "PATCH", f"/api/users/{other.id}", json={"roles": []})
        assert alone.status_code == 409 and "last platform administrator" in alone.text


def test_a_client_that_acts_for_other_people_needs_tokens_manage(bastion: Bastion) -> None:
    """A token-exchange or ID-JAG client gets tokens as whoever's token it holds or the identity
    provider names, not as its owner: clients:manage alone sets up only client_credentials."""
    bastion.ok("POST", "/api/roles", json={"name": "client-only", "permissions": ["clients:manage"]})
    carl = add_person(bastion, "carl", ["client-only"])
    for grant in ("urn:ietf:params:oauth:grant-type:token-exchange", "urn:ietf:params:oauth:grant-type:jwt-bearer"):
        body = {"name": "delegating", "servers": ["demo"], "grant_types": [grant]}
        refused = as_person(bastion, carl, "POST", "/api/oauth/clients", json=body)
        assert refused.status_code == 403 and "tokens:manage" in refused.text, refused.text
    plain = {"name": "own bot", "servers": ["demo"]}
    assert as_person(bastion, carl, "POST", "/api/oauth/clients", json=plain).status_code == 201

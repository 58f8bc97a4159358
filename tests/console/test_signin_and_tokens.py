"""Console sign-in (login CSRF, open redirects, lockout's messages) and the API-token page."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bastion.web.pages import console_path
from tests.console.client import Console, csrf_of, inline_errors
from tests.harness import ADMIN_PASSWORD, Bastion, eventually, run_bastion
from tests.tls import self_signed


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    """One console for this module's tests: each makes what it checks under names of its own."""
    with run_bastion(tmp_path_factory.mktemp("console"), admin_ui=True) as running:
        yield running


def test_the_console_is_off_unless_enabled(bastion: Bastion) -> None:
    assert bastion.http.get("/admin/login").status_code == 404
    assert bastion.http.get("/admin").status_code == 404


def test_pages_redirect_to_sign_in_and_back(gateway: Bastion) -> None:
    with httpx.Client(base_url=gateway.base_url) as browser:
        page = browser.get("/admin/tokens?x=1")
        assert page.status_code == 303
        assert page.headers["location"] == "/admin/login?next=%2Fadmin%2Ftokens%3Fx%3D1"
        form = browser.get(page.headers["location"])
        cookie = form.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        answer = browser.post(
            "/admin/login",
            data={
                "username": "admin",
                "password": ADMIN_PASSWORD,
                "csrf": csrf_of(form.text),
                "next": "/admin/tokens?x=1",
            },
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/admin/tokens?x=1"
        session = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("bastion_session="))
        assert "httponly" in session.lower() and "samesite=strict" in session.lower()
        assert browser.get("/admin/tokens").status_code == 200


def test_sign_in_refuses_forms_without_their_csrf_token_and_foreign_next(gateway: Bastion) -> None:
    with httpx.Client(base_url=gateway.base_url) as browser:
        form = browser.get("/admin/login")
        refused = browser.post("/admin/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf": "x" * 64})
        assert refused.status_code == 403
        assert "bastion_session" not in refused.headers.get("set-cookie", "")
        wrong = browser.post("/admin/login", data={"username": "admin", "password": "nope", "csrf": csrf_of(form.text)})
        assert wrong.status_code == 401 and inline_errors(wrong.text)
        for target in ("https://evil.example/", "//evil.example/admin", "/api/tokens"):
            form = browser.get("/admin/login")  # a sign-in spends the form's cookie
            answer = browser.post(
                "/admin/login",
                data={"username": "admin", "password": ADMIN_PASSWORD, "csrf": csrf_of(form.text), "next": target},
            )
            assert answer.headers["location"] == "/admin", target


@pytest.mark.parametrize(
    "target",
    [
        "/admin/../oauth/authorize?response_type=x",  # the browser resolves it to /oauth/authorize
        "/admin/%2e%2e/oauth/authorize",
        "/admin/.%2E/api/tokens",
        "/admin/..%2f..%2foauth/authorize",
        "/admin/./../api",
        "/admin/\t../api",  # browsers drop tabs and newlines from URLs
        "/admin/\\..\\api",
        "/admin@evil.example",
        "/administrator",
        "https://evil.example/admin",
        "//evil.example/admin",
        "",
        None,
    ],
)
def test_only_paths_inside_the_console_are_continued_at(target: str | None) -> None:
    assert console_path(target) == "/admin"


@pytest.mark.parametrize("target", ["/admin", "/admin/tokens?x=1", "/admin/audit/trace/abc#top", "/admin/origins/"])
def test_console_paths_are_continued_at_as_given(target: str) -> None:
    assert console_path(target) == target


def test_sign_in_and_its_form_never_continue_outside_the_console(gateway: Bastion) -> None:
    with httpx.Client(base_url=gateway.base_url) as browser:
        for target in ("/admin/../oauth/authorize?response_type=x", "/admin/%2e%2e/oauth/authorize"):
            asked = browser.get("/admin/login", params={"next": target})
            assert 'name="next" value="/admin"' in asked.text
            answer = browser.post(
                "/admin/login",
                data={"username": "admin", "password": ADMIN_PASSWORD, "csrf": csrf_of(asked.text), "next": target},
            )
            assert answer.status_code == 303 and answer.headers["location"] == "/admin", target


def test_a_csrf_token_with_non_ascii_characters_is_refused_not_a_500(console: Console, gateway: Bastion) -> None:
    before = len(gateway.ok("GET", "/api/tokens"))
    forged = console.post("/admin/tokens", {"csrf": "é" * 64, "name": "forged", "scopes": "mcp"})
    assert forged.status_code == 403 and "CSRF" in forged.text
    assert len(gateway.ok("GET", "/api/tokens")) == before
    assert console.post("/admin/logout", {"csrf": "é"}).status_code == 403
    with httpx.Client(base_url=gateway.base_url) as browser:
        browser.get("/admin/login")
        refused = browser.post("/admin/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf": "é"})
        assert refused.status_code == 403
        assert "bastion_session" not in refused.headers.get("set-cookie", "")


def test_a_form_body_that_cannot_be_read_gets_a_page_not_json(console: Console) -> None:
    for content_type in ("multipart/form-data", "multipart/form-data; boundary=x"):
        answer = console.http.post(
            "/admin/tokens",
            content=b"--x\r\nContent-Disposition: form-data\r\n\r\nv\r\n--x--",
            headers={"content-type": content_type},
        )
        assert answer.status_code == 400, content_type
        assert answer.headers["content-type"].startswith("text/html")
        assert "could not be read" in answer.text
    garbled = console.http.post(
        "/admin/login", content=b"x", headers={"content-type": "multipart/form-data"}
    )  # parsed by FastAPI for the route's Form() parameters
    assert garbled.status_code == 400 and garbled.headers["content-type"].startswith("text/html")


def test_a_token_is_shown_once_and_revoked_from_the_page(console: Console, gateway: Bastion) -> None:
    created = console.post("/admin/tokens", {"name": "shown-once", "scopes": ["mcp"], "expires_in_days": "7"})
    assert created.status_code == 201
    assert "no-store" in created.headers["cache-control"]
    secret = created.text.split('<pre id="new-token">', 1)[1].split("</pre>", 1)[0]
    assert gateway.http.get("/api/tokens", headers={"authorization": f"Bearer {secret}"}).status_code in (200, 403)
    listing = console.get("/admin/tokens").text
    assert "shown-once" in listing and secret not in listing  # never shown again
    token_id = next(t["id"] for t in gateway.ok("GET", "/api/tokens") if t["name"] == "shown-once")
    revoked = console.post(f"/admin/tokens/{token_id}/revoke", follow_redirects=True)
    assert revoked.status_code == 200 and "is revoked" in revoked.text
    assert gateway.http.get("/api/tokens", headers={"authorization": f"Bearer {secret}"}).status_code == 401


def test_a_new_tokens_client_configuration_is_the_servers_with_the_token_in_it(
    console: Console, gateway: Bastion
) -> None:
    server = gateway.ok("POST", "/api/servers", json={"slug": "sales", "title": "Sales"})
    created = console.post("/admin/tokens", {"name": "agent", "scopes": ["mcp"], "servers": ["sales"]})
    assert created.status_code == 201
    secret = created.text.split('<pre id="new-token">', 1)[1].split("</pre>", 1)[0]
    shown = created.text.split('<pre id="config-sales">', 1)[1].split("</pre>", 1)[0]
    entry = json.loads(html.unescape(shown))["mcpServers"]["sales"]
    assert entry == {
        "type": "streamable-http",
        "url": server["mcp_url"],
        "headers": {"Authorization": f"Bearer {secret}"},
    }


def test_token_form_errors_are_inline_and_nothing_is_created(console: Console, gateway: Bastion) -> None:
    before = len(gateway.ok("GET", "/api/tokens"))
    answer = console.post("/admin/tokens", {"name": "", "scopes": ["everything"]})
    assert answer.status_code == 422
    assert len(inline_errors(answer.text)) >= 2, answer.text
    assert len(gateway.ok("GET", "/api/tokens")) == before


def test_a_refused_token_form_comes_back_with_exactly_the_boxes_that_were_ticked(
    console: Console, gateway: Bastion
) -> None:
    """One ticked box comes back from a form as a plain string: the page ticked every option whose
    value is part of it (`mcp` inside `mcp:read`), and a resubmission asked for more than was chosen."""
    answer = console.post("/admin/tokens", {"name": "narrow", "scopes": "mcp:read", "expires_in_days": "400"})
    assert answer.status_code == 422
    ticked = re.findall(r'name="scopes" value="([^"]+)" checked', answer.text)
    assert ticked == ["mcp:read"], ticked


def test_forms_without_the_session_csrf_token_are_refused(console: Console, gateway: Bastion) -> None:
    before = len(gateway.ok("GET", "/api/tokens"))
    for data in ({"csrf": ""}, {"csrf": "0" * 64}):
        answer = console.http.post("/admin/tokens", data={"name": "forged", "scopes": "mcp", **data})
        assert answer.status_code == 403 and "CSRF" in answer.text
    assert len(gateway.ok("GET", "/api/tokens")) == before


async def _console_records(gateway: Bastion, request_id: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []

    async def recorded() -> bool:
        found[:] = gateway.ok("GET", "/api/audit/records", params={"correlation_id": request_id})
        return bool(found)

    await eventually(recorded)
    return found


@pytest.mark.anyio
async def test_console_requests_are_in_the_audit_trail_with_who_and_why(console: Console, gateway: Bastion) -> None:
    admin = gateway.ok("GET", "/api/users")[0]
    created = console.post(
        "/admin/tokens", {"name": "audited", "scopes": ["mcp"]}, headers={"x-request-id": "console-create-1"}
    )
    assert created.status_code == 201
    (record,) = await _console_records(gateway, "console-create-1")
    assert record["kind"] == "console.request" and record["method"] == "POST /admin/tokens"
    assert record["principal"] == admin["id"] and record["decision"] == "allow" and record["status"] == "201"

    forged = console.http.post(
        "/admin/tokens", data={"csrf": "0" * 64, "name": "x"}, headers={"x-request-id": "console-forged-1"}
    )
    assert forged.status_code == 403
    (record,) = await _console_records(gateway, "console-forged-1")
    assert record["decision"] == "deny" and "CSRF" in str(record["reason"])
    assert "0" * 64 not in str(record)  # never the form's values

    viewed = console.get("/admin/audit", headers={"x-request-id": "console-view-1"})
    assert viewed.status_code == 200
    (record,) = await _console_records(gateway, "console-view-1")
    assert record["method"] == "GET /admin/audit" and record["principal"] == admin["id"]


def test_under_tls_the_console_cookies_are_secure_and_host_only(tmp_path: Path) -> None:
    """`__Host-` (RFC 6265bis): Secure, Path=/, no Domain, so no sibling subdomain can plant one."""
    cert, key = self_signed(tmp_path)
    with run_bastion(tmp_path, admin_ui=True, ssl_certfile=cert, ssl_keyfile=key) as gateway:
        assert gateway.base_url.startswith("https://")
        with httpx.Client(base_url=gateway.base_url, verify=False) as browser:  # the throwaway certificate
            form = browser.get("/admin/login")
            assert form.headers["set-cookie"].startswith("__Host-bastion_console_login=")
            signed_in = browser.post(
                "/admin/login", data={"username": "admin", "password": ADMIN_PASSWORD, "csrf": csrf_of(form.text)}
            )
            assert signed_in.status_code == 303, signed_in.text  # the form's cookie was read back
            cookies = signed_in.headers.get_list("set-cookie")
            session = next(h for h in cookies if h.startswith("__Host-bastion_session="))
            for cookie in (form.headers["set-cookie"], session):
                flags = {part.strip().lower() for part in cookie.split(";")[1:]}
                assert {"secure", "httponly", "path=/", "samesite=strict"} <= flags, cookie
                assert not any(flag.startswith("domain=") for flag in flags), cookie
            assert any(h.startswith('__Host-bastion_console_login=""') for h in cookies)  # the form's, dropped
            page = browser.get("/admin")
            assert page.status_code == 200, page.text  # signed in: the session cookie is read back
            assert page.headers["strict-transport-security"].startswith("max-age=")
            kept = browser.cookies["__Host-bastion_session"]  # a copy, as someone who took it would keep
            out = browser.post("/admin/logout", data={"csrf": csrf_of(page.text)})
            assert any(h.startswith('__Host-bastion_session=""') for h in out.headers.get_list("set-cookie"))
        with httpx.Client(base_url=gateway.base_url, verify=False) as thief:
            thief.cookies.set("__Host-bastion_session", kept)
            assert thief.get("/admin").headers.get("location", "").startswith("/admin/login")


def test_a_member_who_cannot_list_servers_types_their_slugs(gateway: Bastion) -> None:
    for slug in ("north", "south"):
        gateway.ok("POST", "/api/servers", json={"slug": slug, "title": slug})
    password = "a long enough member password 9"
    gateway.ok("POST", "/api/users", json={"username": "mo", "password": password, "roles": ["member"]})
    mo = Console(gateway, "mo", password)
    try:
        form = mo.get("/admin/tokens").text
        assert 'placeholder="server slugs, separated by spaces or commas"' in form and 'value="north"' not in form
        created = mo.post("/admin/tokens", {"name": "both", "servers": "north, south", "scopes": ["mcp"]})
        assert created.status_code == 201, created.text
        unknown = mo.post("/admin/tokens", {"name": "nowhere", "servers": "north west", "scopes": ["mcp"]})
        assert unknown.status_code == 422 and "west" in unknown.text
    finally:
        mo.close()
    ids = {s["slug"]: s["id"] for s in gateway.ok("GET", "/api/servers")}
    (token,) = [t for t in gateway.ok("GET", "/api/tokens") if t["name"] == "both"]
    assert sorted(token["server_ids"]) == sorted([ids["north"], ids["south"]])
    assert not [t for t in gateway.ok("GET", "/api/tokens") if t["name"] == "nowhere"]


def test_a_session_that_began_under_a_name_now_someone_elses_still_acts_as_its_own_person(gateway: Bastion) -> None:
    """A session keeps the name it began with (an identity provider renames people at sign-in, so a
    name can change hands meanwhile): "myself" is the session's person, found by id, never by name,
    and what they do is recorded under the name they have now."""
    gateway.ok("POST", "/api/servers", json={"slug": "renamed", "title": "renamed"})
    password = "a long enough member password 9"
    users = {
        name: gateway.ok("POST", "/api/users", json={"username": name, "password": password, "roles": ["member"]})
        for name in ("ana", "ben")
    }
    ana = Console(gateway, "ana", password)
    try:
        sessions = gateway.services.auth.sessions
        claims = sessions.verify(ana.http.cookies["bastion_session"], purpose="session")
        stale = sessions.issue(claims["sub"], purpose="session", extra={"name": "ben", "sid": claims["sid"]})
        ana.http.cookies.clear()
        ana.http.cookies.set("bastion_session", stale)
        assert ana.get("/admin/tokens").status_code == 200  # signed in with it
        created = ana.post("/admin/tokens", {"name": "whose", "servers": "renamed", "scopes": ["mcp"]})
        assert created.status_code == 201, created.text
    finally:
        ana.close()
    (token,) = [t for t in gateway.ok("GET", "/api/tokens") if t["name"] == "whose"]
    assert token["user_id"] == users["ana"]["id"], "the token acts as the session's person"

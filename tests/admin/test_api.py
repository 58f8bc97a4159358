"""The admin REST API over real HTTP: authentication, validation, errors, limits and headers.

One Bastion serves the whole module (starting one per test would dominate the run time); each
test makes its own origins, servers and tokens under unique names, so no test depends on another.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bastion.logins import REFUSED
from tests.harness import ADMIN_PASSWORD, STDIO_INVENTORY, Bastion, free_port, origin_process, run_bastion

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}
MISSING = "0" * 32


@pytest.fixture(scope="module")
def bastion(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    """A module-wide Bastion (overrides the per-test fixture of conftest)."""
    with run_bastion(tmp_path_factory.mktemp("admin-api")) as running:
        yield running


@pytest.fixture(scope="module")
def inventory(bastion: Bastion) -> dict[str, Any]:
    """The bundled demo origin over stdio, registered (and discovered) once for the module."""
    origin: dict[str, Any] = bastion.add_origin("inventory", command=STDIO_INVENTORY)
    assert origin["last_error"] is None, origin
    return origin


@pytest.fixture(scope="module")
def inventory_http(bastion: Bastion) -> Iterator[dict[str, Any]]:
    """A second, separate demo origin over Streamable HTTP: it offers the same names as `inventory`."""
    with origin_process() as url:
        origin: dict[str, Any] = bastion.add_origin("inventory-http", url=url)
        assert origin["last_error"] is None, origin
        yield origin


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def dead_url() -> str:
    """An HTTP origin nobody listens on: registering it is quick (discovery fails at once)."""
    return f"http://127.0.0.1:{free_port()}/mcp"


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    return error


def fields_of(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    error = error_of(response)
    assert error["code"] == "validation_failed"
    return {f["field"]: f["message"] for f in error["fields"]}


# --- authentication ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/origins"),
        ("POST", "/api/servers"),
        ("GET", "/api/tokens"),
        ("POST", f"/api/tokens/{MISSING}/revoke"),
    ],
)
def test_a_request_without_a_token_is_refused_with_401_and_a_bearer_challenge(
    bastion: Bastion, method: str, path: str
) -> None:
    response = bastion.http.request(method, path, json={"slug": "never-created"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="bastion"'
    assert error_of(response)["code"] == "unauthenticated"
    assert bastion.api("GET", "/api/servers/never-created").status_code == 404


@pytest.mark.parametrize("authorization", ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer bst_not-a-real-token"])
def test_a_malformed_or_unknown_token_is_refused_with_401(bastion: Bastion, authorization: str) -> None:
    response = bastion.http.get("/api/origins", headers={"authorization": authorization})

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="bastion"'


def test_an_mcp_scoped_token_is_forbidden_from_the_admin_api(bastion: Bastion) -> None:
    mcp_token = bastion.token(name=unique("mcp-only"))

    response = bastion.http.get("/api/tokens", headers={"authorization": f"Bearer {mcp_token}"})

    assert response.status_code == 403
    assert error_of(response)["code"] == "forbidden"


@pytest.mark.parametrize(
    "credentials",
    [{"username": "admin", "password": "wrong-password"}, {"username": "nobody", "password": ADMIN_PASSWORD}],
)
def test_login_with_a_wrong_password_or_an_unknown_user_is_refused_with_401(
    bastion: Bastion, credentials: dict[str, str]
) -> None:
    response = bastion.http.post("/api/login", json=credentials)

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="bastion"'
    assert error_of(response) == {"code": "unauthenticated", "message": REFUSED}


def test_login_returns_a_one_hour_admin_token_that_works(bastion: Bastion) -> None:
    response = bastion.http.post("/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})

    assert response.status_code == 200
    created = response.json()
    assert created["scopes"] == ["admin"]
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(minutes=55) < expires - datetime.now(UTC) <= timedelta(hours=1)
    listed = bastion.http.get("/api/tokens", headers={"authorization": f"Bearer {created['token']}"})
    assert listed.status_code == 200


def test_a_revoked_token_is_refused_on_the_next_request(bastion: Bastion) -> None:
    login = bastion.http.post("/api/login", json={"username": "admin", "password": ADMIN_PASSWORD}).json()
    headers = {"authorization": f"Bearer {login['token']}"}
    assert bastion.http.get("/api/origins", headers=headers).status_code == 200

    revoked = bastion.ok("POST", f"/api/tokens/{login['id']}/revoke")

    assert revoked["revoked_at"] is not None
    response = bastion.http.get("/api/origins", headers=headers)
    assert response.status_code == 401
    assert "revoked" in error_of(response)["message"]


# --- validation -------------------------------------------------------------------------------


def test_a_bad_slug_is_refused_with_422_naming_the_field(bastion: Bastion) -> None:
    origin = bastion.api("POST", "/api/origins", json={"name": "Bad Name!", "transport": "http", "url": dead_url()})
    server = bastion.api("POST", "/api/servers", json={"slug": "-starts-with-a-dash"})

    assert "pattern" in fields_of(origin)["name"]
    assert "pattern" in fields_of(server)["slug"]


def test_an_http_origin_without_a_url_is_refused_with_422_naming_the_url_field(bastion: Bastion) -> None:
    response = bastion.api("POST", "/api/origins", json={"name": unique("no-url"), "transport": "http"})

    fields = fields_of(response)
    assert "url" in fields, fields
    assert "needs url" in fields["url"]


def test_an_origin_url_with_credentials_is_refused_and_not_echoed(bastion: Bastion) -> None:
    url = "https://svc:hunter2-secret@crm.example/mcp"
    response = bastion.api("POST", "/api/origins", json={"name": unique("creds"), "transport": "http", "url": url})

    fields = fields_of(response)
    assert "must not carry credentials" in fields["url"]
    assert "hunter2-secret" not in response.text


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:99999/mcp", "port"),
        ("http://127.0.0.1:abc/mcp", "port"),
        ("http://a..b/mcp", "not a valid host name"),
        ("http:///mcp", "needs a host"),
        ("http://127.0.0.1:0/mcp", "from 1 to 65535"),  # one client read it as 80, another as 0
        ("http://127.0.0.1:9/mcp/../admin", "'.' or '..' segments"),  # one sent it as is, another resolved it
        ("http://127.0.0.1:9/./mcp", "'.' or '..' segments"),
        ("http://127.0.0.1:9/a/%2e%2E/mcp", "'.' or '..' segments"),  # one client decodes it, one does not
    ],
)
def test_an_origin_url_python_cannot_connect_to_is_refused_with_422_and_nothing_is_stored(
    bastion: Bastion, url: str, says: str
) -> None:
    name = unique("badurl")
    response = bastion.api("POST", "/api/origins", json={"name": name, "transport": "http", "url": url})
    assert response.status_code == 422 and says in fields_of(response)["url"]
    assert bastion.api("GET", f"/api/origins/{name}").status_code == 404


def test_an_unknown_field_is_refused_with_422_naming_it(bastion: Bastion) -> None:
    body = {"name": unique("extra"), "transport": "stdio", "command": STDIO_INVENTORY, "shell": True}

    response = bastion.api("POST", "/api/origins", json=body)

    assert fields_of(response) == {"shell": "Extra inputs are not permitted"}


def test_several_bad_fields_are_each_reported(bastion: Bastion) -> None:
    body = {"name": "Bad Name", "transport": "ftp", "timeout_seconds": -1}

    fields = fields_of(bastion.api("POST", "/api/origins", json=body))

    assert {"name", "transport", "timeout_seconds"} <= set(fields)


def test_a_body_that_is_not_json_is_refused_with_422(bastion: Bastion) -> None:
    response = bastion.api("POST", "/api/servers", content=b"{not json", headers={"content-type": "application/json"})

    assert response.status_code == 422
    assert error_of(response)["code"] == "validation_failed"


@pytest.mark.parametrize("alias", ["", "two words", "x" * 600], ids=["empty", "two words", "600 characters"])
def test_a_compose_alias_that_is_not_a_plain_bounded_name_is_refused_with_422(
    bastion: Bastion, inventory: dict[str, Any], alias: str
) -> None:
    server = bastion.ok("POST", "/api/servers", json={"slug": unique("alias")})

    response = bastion.api(
        "POST", f"/api/servers/{server['id']}/compose", json={"origin": "inventory", "aliases": {"get_order": alias}}
    )

    assert response.status_code == 422, response.text
    assert bastion.ok("GET", f"/api/servers/{server['id']}")["items"] == []


# --- unknown ids, unknown paths -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"/api/origins/{MISSING}", None),
        ("POST", f"/api/origins/{MISSING}/refresh", None),
        ("DELETE", f"/api/origins/{MISSING}", None),
        ("GET", f"/api/servers/{MISSING}", None),
        ("POST", f"/api/servers/{MISSING}/compose", {"origin": "inventory"}),
        ("PATCH", f"/api/servers/{MISSING}/items/{MISSING}", {"enabled": False}),
        ("POST", f"/api/servers/{MISSING}/publish", None),
        ("POST", f"/api/servers/{MISSING}/unpublish", None),
        ("DELETE", f"/api/servers/{MISSING}", None),
        ("POST", f"/api/tokens/{MISSING}/revoke", None),
        ("POST", "/api/tokens", {"name": "t", "servers": [MISSING]}),
    ],
)
def test_an_unknown_id_answers_404(bastion: Bastion, method: str, path: str, body: Any) -> None:
    response = bastion.api(method, path, json=body)

    assert response.status_code == 404
    error = error_of(response)
    assert error["code"] == "not_found"
    assert MISSING in error["message"]


def test_an_unknown_origin_or_item_in_an_existing_server_answers_404(bastion: Bastion) -> None:
    server = bastion.ok("POST", "/api/servers", json={"slug": unique("known")})

    compose = bastion.api("POST", f"/api/servers/{server['id']}/compose", json={"origin": "no-such-origin"})
    patch = bastion.api("PATCH", f"/api/servers/{server['id']}/items/{MISSING}", json={"enabled": False})

    assert compose.status_code == 404 and error_of(compose)["code"] == "not_found"
    assert patch.status_code == 404 and error_of(patch)["code"] == "not_found"


def test_an_unknown_path_answers_404_in_the_error_envelope(bastion: Bastion) -> None:
    response = bastion.api("GET", "/api/no-such-thing")

    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# --- conflicts ----------------------------------------------------------------------------------


def test_a_duplicate_origin_name_answers_409(bastion: Bastion) -> None:
    name = unique("dup")
    first = bastion.add_origin(name, url=dead_url())

    again = bastion.api("POST", "/api/origins", json={"name": name, "transport": "http", "url": dead_url()})

    assert again.status_code == 409
    assert error_of(again)["code"] == "conflict"
    assert [o["id"] for o in bastion.ok("GET", "/api/origins") if o["name"] == name] == [first["id"]]


def test_a_duplicate_server_slug_answers_409(bastion: Bastion) -> None:
    slug = unique("dup")
    bastion.ok("POST", "/api/servers", json={"slug": slug})

    again = bastion.api("POST", "/api/servers", json={"slug": slug})

    assert again.status_code == 409
    assert error_of(again)["code"] == "conflict"


def test_a_compose_name_clash_answers_409_and_leaves_the_server_unchanged(
    bastion: Bastion, inventory: dict[str, Any], inventory_http: dict[str, Any]
) -> None:
    server = bastion.ok("POST", "/api/servers", json={"slug": unique("clash")})
    before = bastion.ok("POST", f"/api/servers/{server['id']}/compose", json={"origin": "inventory"})["items"]

    clash = bastion.api("POST", f"/api/servers/{server['id']}/compose", json={"origin": inventory_http["id"]})

    assert clash.status_code == 409
    assert "alias" in error_of(clash)["message"]
    assert bastion.ok("GET", f"/api/servers/{server['id']}")["items"] == before
    # Tools and prompts can be prefixed apart; resources keep their URI, so the clashing one is left out.
    tools = [i["name"] for i in inventory_http["items"] if i["kind"] in ("tool", "prompt")]
    prefixed = bastion.ok(
        "POST",
        f"/api/servers/{server['id']}/compose",
        json={"origin": "inventory-http", "prefix": "http_", "items": tools},
    )
    assert len(prefixed["items"]) == len(before) + len(tools)


def test_renaming_an_item_onto_another_items_name_answers_409(bastion: Bastion, inventory: dict[str, Any]) -> None:
    server = bastion.ok("POST", "/api/servers", json={"slug": unique("rename")})
    items = bastion.ok("POST", f"/api/servers/{server['id']}/compose", json={"origin": "inventory"})["items"]
    refund = next(i for i in items if i["name"] == "refund_order")

    # Its own connection: a server error makes uvicorn drop the connection, which must not break later tests.
    with httpx.Client(base_url=bastion.base_url, timeout=30) as client:
        response = client.patch(
            f"/api/servers/{server['id']}/items/{refund['id']}",
            json={"alias": "get_order"},
            headers={"authorization": f"Bearer {bastion.admin_token}"},
        )

    assert response.status_code == 409, response.text
    assert error_of(response)["code"] == "conflict"
    assert ("tool", "refund_order") in {
        (i["kind"], i["exposed_name"]) for i in bastion.ok("GET", f"/api/servers/{server['id']}")["items"]
    }


def test_an_item_can_be_disabled_and_renamed(bastion: Bastion, inventory: dict[str, Any]) -> None:
    server = bastion.ok("POST", "/api/servers", json={"slug": unique("patch")})
    items = bastion.ok("POST", f"/api/servers/{server['id']}/compose", json={"origin": "inventory"})["items"]
    refund = next(i for i in items if i["name"] == "refund_order")

    patched = bastion.ok(
        "PATCH",
        f"/api/servers/{server['id']}/items/{refund['id']}",
        json={"alias": "give_money_back", "enabled": False},
    )

    item = next(i for i in patched["items"] if i["id"] == refund["id"])
    assert (item["exposed_name"], item["enabled"]) == ("give_money_back", False)


def test_aliasing_a_resource_answers_400(bastion: Bastion, inventory: dict[str, Any]) -> None:
    server = bastion.ok("POST", "/api/servers", json={"slug": unique("resource")})
    items = bastion.ok("POST", f"/api/servers/{server['id']}/compose", json={"origin": "inventory"})["items"]
    resource = next(i for i in items if i["kind"] == "resource")

    response = bastion.api("PATCH", f"/api/servers/{server['id']}/items/{resource['id']}", json={"alias": "warehouses"})

    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"


# --- a happy path through the API ------------------------------------------------------------------


def test_a_server_composed_from_the_stdio_origin_exposes_prefixed_tools_and_can_be_published(
    bastion: Bastion, inventory: dict[str, Any]
) -> None:
    slug = unique("shop")
    server = bastion.ok("POST", "/api/servers", json={"slug": slug, "title": "Shop"})
    assert server["published"] is False and server["mcp_url"] == bastion.mcp_url(slug)

    composed = bastion.ok(
        "POST",
        f"/api/servers/{server['id']}/compose",
        json={
            "origin": "inventory",
            "prefix": "inv_",
            "items": ["get_order", "list_stock", "inventory://warehouses"],
            "aliases": {"list_stock": "stock"},
        },
    )
    published = bastion.ok("POST", f"/api/servers/{slug}/publish")

    assert {(i["kind"], i["exposed_name"], i["name"]) for i in composed["items"]} == {
        ("tool", "inv_get_order", "get_order"),
        ("tool", "stock", "list_stock"),
        ("resource", "inventory://warehouses", "inventory://warehouses"),
    }
    assert all(i["origin_id"] == inventory["id"] and i["enabled"] for i in composed["items"])
    assert published["published"] is True
    assert slug in {s["slug"] for s in bastion.ok("GET", "/api/servers") if s["published"]}


# --- limits -----------------------------------------------------------------------------------------


def test_a_body_declared_over_the_limit_answers_413(bastion: Bastion) -> None:
    body = b'{"slug": "' + b"x" * (bastion.settings.max_body_bytes + 1) + b'"}'

    response = bastion.api("POST", "/api/servers", content=body, headers={"content-type": "application/json"})

    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


def test_a_body_streamed_over_the_limit_without_a_length_answers_413(bastion: Bastion) -> None:
    chunk = b"x" * 65536
    count = bastion.settings.max_body_bytes // len(chunk) + 2

    def chunks() -> Iterator[bytes]:
        yield b'{"slug": "'
        for _ in range(count):
            yield chunk
        yield b'"}'

    response = bastion.api("POST", "/api/servers", content=chunks(), headers={"content-type": "application/json"})

    assert response.status_code == 413, response.text
    assert error_of(response)["code"] == "payload_too_large"


# --- headers ------------------------------------------------------------------------------------------


def _sample_responses(bastion: Bastion) -> dict[str, httpx.Response]:
    too_big = b"x" * (bastion.settings.max_body_bytes + 1)
    return {
        "200 healthz": bastion.http.get("/healthz"),
        "200 api": bastion.api("GET", "/api/servers"),
        "200 openapi": bastion.http.get("/api/openapi.json"),
        "401": bastion.http.get("/api/origins"),
        "404 id": bastion.api("GET", f"/api/origins/{MISSING}"),
        "404 path": bastion.http.get("/nowhere"),
        "405": bastion.api("PUT", "/api/origins"),
        "422": bastion.api("POST", "/api/servers", json={}),
        "413": bastion.api("POST", "/api/servers", content=too_big),
    }


def test_every_response_carries_the_security_headers_and_no_server_header(bastion: Bastion) -> None:
    for label, response in _sample_responses(bastion).items():
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (label, name, dict(response.headers))
        assert "server" not in response.headers, label
        assert "strict-transport-security" not in response.headers, label  # no TLS here


def test_a_well_formed_request_id_is_echoed(bastion: Bastion) -> None:
    for path in ("/healthz", "/api/origins"):
        response = bastion.http.get(path, headers={"x-request-id": "client-42.retry:1_A"})

        assert response.headers["x-request-id"] == "client-42.retry:1_A"


@pytest.mark.parametrize("offered", ["has space", "x" * 129, "semi;colon", "", ".", ".."])  # dots alone: a path segment
def test_a_malformed_request_id_is_replaced_with_a_fresh_one(bastion: Bastion, offered: str) -> None:
    response = bastion.http.get("/healthz", headers={"x-request-id": offered})

    echoed = response.headers["x-request-id"]
    assert echoed != offered
    assert len(echoed) == 32 and int(echoed, 16) >= 0


def test_a_request_without_a_request_id_gets_a_distinct_one_each_time(bastion: Bastion) -> None:
    ids = {bastion.http.get("/healthz").headers["x-request-id"] for _ in range(3)}

    assert len(ids) == 3


# --- tokens ---------------------------------------------------------------------------------------------


def test_the_token_secret_is_shown_once_and_the_list_never_contains_secrets_or_hashes(bastion: Bastion) -> None:
    name = unique("listed")
    created = bastion.ok("POST", "/api/tokens", json={"name": name, "expires_in_days": 7})
    secret = created["token"]
    assert secret.startswith("bst_")

    response = bastion.api("GET", "/api/tokens")

    assert response.status_code == 200
    listed = [t for t in response.json() if t["id"] == created["id"]]
    assert len(listed) == 1
    assert set(listed[0]) == {
        "id",
        "name",
        "user_id",
        "scopes",
        "server_ids",
        "expires_at",
        "revoked_at",
        "created_at",
        "permissions",
        "allowed_cidrs",
        "not_before",
        "max_uses",
        "uses",
    }
    assert listed[0]["name"] == name and listed[0]["scopes"] == ["mcp"]
    assert all("token" not in t and "token_hash" not in t for t in response.json())
    assert secret not in response.text
    assert hashlib.sha256(secret.encode()).hexdigest() not in response.text


def test_a_token_for_a_server_lists_the_server_id(bastion: Bastion) -> None:
    server = bastion.ok("POST", "/api/servers", json={"slug": unique("granted")})

    created = bastion.ok("POST", "/api/tokens", json={"name": "granted", "servers": [server["slug"]]})

    assert created["server_ids"] == [server["id"]]


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "t", "expires_in_days": 0},
        {"name": "t", "expires_in_days": 366},
        {"name": "t", "scopes": []},
        {"name": "t", "scopes": ["root"]},
        {"name": "t", "not_before": "9999-12-31T23:00:00-05:00"},  # past what UTC can hold
        {"name": "t", "not_before": "0001-01-01T00:30:00+01:00"},
    ],
)
def test_an_invalid_token_request_is_refused_with_422(bastion: Bastion, body: dict[str, Any]) -> None:
    assert bastion.api("POST", "/api/tokens", json=body).status_code == 422


@pytest.mark.parametrize("bound", ["since_us", "until_us", "after_seq"])
def test_an_audit_bound_below_zero_or_past_the_store_is_refused_with_422(bastion: Bastion, bound: str) -> None:
    for path in ("/api/audit/records", "/api/audit/export"):
        for value in (str(10**20), "-1"):
            response = bastion.api("GET", path, params={bound: value})
            assert response.status_code == 422, (path, value, response.status_code)


def test_a_policy_scope_with_a_trailing_newline_is_refused(bastion: Bastion) -> None:
    limit = {"settings": {"per_principal": "5/minute"}}
    response = bastion.api("PUT", "/api/policies/rate_limit", params={"scope": "global\n"}, json=limit)
    assert response.status_code == 400 and "invalid policy scope" in response.text
    assert all(p["scope"] != "global\n" for p in bastion.ok("GET", "/api/policies"))


# --- unauthenticated endpoints ------------------------------------------------------------------------------


def test_the_openapi_document_describes_the_admin_api(bastion: Bastion) -> None:
    response = bastion.http.get("/api/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "Bastion admin API"
    assert {"/api/login", "/api/origins", "/api/servers/{server_id}/compose", "/api/tokens"} <= set(document["paths"])
    assert "/healthz" not in document["paths"]


def test_health_and_readiness_answer_without_authentication(bastion: Bastion) -> None:
    health = bastion.http.get("/healthz")
    ready = bastion.http.get("/readyz")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert ready.json()["epoch"] == bastion.services.holder.current.epoch  # which changes this replica has seen

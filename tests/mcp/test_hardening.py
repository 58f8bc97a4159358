"""Transport hardening on the MCP endpoint, checked on the wire with raw HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import STDIO_INVENTORY, Bastion, run_bastion

INIT: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
ACCEPT = {"accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("hardening"), max_body_bytes=4096, max_json_depth=8) as bastion:
        bastion.add_origin("local", command=STDIO_INVENTORY)
        bastion.publish_server("hard", {"origin": "local"})
        bastion.publish_server("other", {"origin": "local", "items": ["list_stock"]})
        bastion.ok("POST", "/api/servers", json={"slug": "draft"})
        yield bastion


@pytest.fixture(scope="module")
def token(gw: Bastion) -> str:
    return gw.token("hard")


def post(gw: Bastion, body: Any, token: str | None, **headers: str) -> httpx.Response:
    all_headers = {**ACCEPT, "content-type": "application/json", **headers}
    if token is not None:
        all_headers["authorization"] = f"Bearer {token}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return gw.http.post("/servers/hard/mcp", content=content, headers=all_headers)


def open_session(gw: Bastion, token: str) -> str:
    response = post(gw, INIT, token)
    assert response.status_code == 200
    return response.headers["mcp-session-id"]


def test_missing_token_is_401_with_a_bearer_challenge(gw: Bastion) -> None:
    response = post(gw, INIT, None)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert "bearer token" in response.json()["error"]["message"]


def test_unknown_token_is_401(gw: Bastion) -> None:
    response = post(gw, INIT, "bst_not-a-real-token")
    assert response.status_code == 401
    assert "invalid, expired or revoked" in response.json()["error"]["message"]


def test_token_for_another_server_is_403(gw: Bastion) -> None:
    other = gw.token("other")
    response = post(gw, INIT, other)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_unpublished_and_unknown_servers_are_404(gw: Bastion) -> None:
    admin_token = gw.token("draft")
    for slug in ("draft", "nope"):
        response = gw.http.post(
            f"/servers/{slug}/mcp", json=INIT, headers={**ACCEPT, "authorization": f"Bearer {admin_token}"}
        )
        assert response.status_code == 404


@pytest.mark.parametrize("path", ["a%0d%0ab", "a%22b", "A", "a%20b", "%2e%2e", "-a", "a" * 64])
def test_paths_that_are_no_slug_are_404_not_a_dropped_connection(gw: Bastion, path: str) -> None:
    """A CR/LF or quote decoded from the path would have gone into the 401's WWW-Authenticate header
    (uvicorn then dropped the connection instead of answering): such a path names no server."""
    for token in (None, gw.token("hard")):
        headers = {**ACCEPT, **({"authorization": f"Bearer {token}"} if token else {})}
        response = gw.http.post(f"/servers/{path}/mcp", json=INIT, headers=headers)
        assert response.status_code == 404
        assert "www-authenticate" not in response.headers


def test_revoked_token_is_refused_on_the_next_request(gw: Bastion) -> None:
    created = gw.ok("POST", "/api/tokens", json={"name": "short", "servers": ["hard"]})
    assert post(gw, INIT, created["token"]).status_code == 200
    gw.ok("POST", f"/api/tokens/{created['id']}/revoke")
    assert post(gw, INIT, created["token"]).status_code == 401


def test_oversized_body_is_413(gw: Bastion, token: str) -> None:
    big = {**INIT, "params": {**INIT["params"], "pad": "x" * 5000}}
    response = post(gw, big, token)
    assert response.status_code == 413
    assert "exceeds 4096 bytes" in response.json()["error"]["message"]


def test_foreign_browser_origin_is_403_and_local_or_absent_origin_is_accepted(gw: Bastion, token: str) -> None:
    assert post(gw, INIT, token, origin="https://evil.example").status_code == 403
    assert post(gw, INIT, token, origin="http://localhost:5173").status_code == 200
    assert post(gw, INIT, token).status_code == 200


def test_session_is_bound_to_the_token_that_opened_it(gw: Bastion, token: str) -> None:
    session = open_session(gw, token)
    other_token = gw.token("hard", name="someone else")
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    assert post(gw, ping, token, **{"mcp-session-id": session}).status_code == 200
    stolen = post(gw, ping, other_token, **{"mcp-session-id": session})
    assert stolen.status_code == 404


def test_malformed_messages_in_a_session_are_precise_errors_or_ignored_never_a_500(gw: Bastion, token: str) -> None:
    session = {"mcp-session-id": open_session(gw, token), "mcp-protocol-version": "2025-11-25"}
    call = {"name": "list_stock", "arguments": {}, "_meta": 5}
    answer = post(gw, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call}, token, **session)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == -32602
    assert answer.json()["error"]["message"] == "invalid tools/call params: _meta: must be an object"
    # Notifications and replies that name no request of this session: accepted (202), nothing happens.
    for message in (
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": [1]},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": {}}},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": [1]}},
        {"jsonrpc": "2.0", "id": {"x": 1}, "result": {}},
        {"jsonrpc": "2.0", "id": [1], "result": {}},
    ):
        assert post(gw, message, token, **session).status_code == 202, message
    assert post(gw, {"jsonrpc": "2.0", "id": 4, "method": "ping"}, token, **session).json()["result"] == {}


def test_session_ids_are_long_and_unpredictable(gw: Bastion, token: str) -> None:
    ids = {open_session(gw, token) for _ in range(5)}
    assert len(ids) == 5
    assert all(len(i) >= 32 for i in ids)  # 24 random bytes, base64url: 192 bits


def test_requests_need_a_session_after_initialize_and_unknown_sessions_are_404(gw: Bastion, token: str) -> None:
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    missing = post(gw, ping, token)
    unknown = post(gw, ping, token, **{"mcp-session-id": "made-up"})
    assert missing.status_code == 400 and unknown.status_code == 404
    # JSON-RPC 2.0 §5: the refusal answers the request it read, by its id.
    assert missing.json()["id"] == 2 and unknown.json()["id"] == 2
    reply = post(gw, {"jsonrpc": "2.0", "id": "bastion-1", "result": {}}, token, **{"mcp-session-id": "made-up"})
    assert reply.status_code == 404 and reply.json()["id"] is None  # a client's reply is not answered by id


def test_deleted_session_is_gone(gw: Bastion, token: str) -> None:
    session = open_session(gw, token)
    headers = {"authorization": f"Bearer {token}", "mcp-session-id": session}
    assert gw.http.delete("/servers/hard/mcp", headers=headers).status_code == 204
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    assert post(gw, ping, token, **{"mcp-session-id": session}).status_code == 404


def test_json_rpc_errors_carry_the_right_codes(gw: Bastion, token: str) -> None:
    parse = post(gw, b"{nope", token)
    assert parse.status_code == 400 and parse.json()["error"]["code"] == -32700
    batch = post(gw, [INIT], token)
    assert batch.status_code == 400 and batch.json()["error"]["code"] == -32600
    not_rpc = post(gw, {"hello": "world"}, token)
    assert not_rpc.status_code == 400 and not_rpc.json()["error"]["code"] == -32600
    deep: Any = "x"
    for _ in range(20):
        deep = [deep]
    too_deep = post(gw, {**INIT, "params": {"nested": deep}}, token)
    assert too_deep.status_code == 400 and "nested deeper than 8" in too_deep.json()["error"]["message"]

    session = {"mcp-session-id": open_session(gw, token)}
    unknown = post(gw, {"jsonrpc": "2.0", "id": 3, "method": "tools/explode"}, token, **session)
    assert unknown.json()["error"]["code"] == -32601
    bad_params = post(
        gw, {"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"arguments": {}}}, token, **session
    )
    assert bad_params.json()["error"]["code"] == -32602
    assert "name" in bad_params.json()["error"]["message"]


def test_protocol_version_header_must_match_the_session(gw: Bastion, token: str) -> None:
    session = open_session(gw, token)
    ping = {"jsonrpc": "2.0", "id": 2, "method": "ping"}
    ok = post(gw, ping, token, **{"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})
    assert ok.status_code == 200
    wrong = post(gw, ping, token, **{"mcp-session-id": session, "mcp-protocol-version": "2025-03-26"})
    assert wrong.status_code == 400


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_protocol_version_spoken_nowhere_is_400_on_any_method_and_2026_on_get_or_delete_is_405(
    gw: Bastion, token: str, method: str
) -> None:
    session = open_session(gw, token)
    base = {**ACCEPT, "authorization": f"Bearer {token}", "mcp-session-id": session}
    for unknown in ("foo", "1900-01-01"):
        answer = gw.http.request(method, "/servers/hard/mcp", headers={**base, "mcp-protocol-version": unknown})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == -32022, (unknown, answer.text)
    modern = gw.http.request(method, "/servers/hard/mcp", headers={**base, "mcp-protocol-version": "2026-07-28"})
    assert modern.status_code == 405 and modern.headers["allow"] == "POST"


def _modern(method: str, params: dict[str, Any], version: str = "2026-07-28") -> dict[str, Any]:
    meta = {"io.modelcontextprotocol/protocolVersion": version, "io.modelcontextprotocol/clientCapabilities": {}}
    return {"jsonrpc": "2.0", "id": 9, "method": method, "params": {**params, "_meta": meta}}


def test_stateless_requests_check_mcp_method_and_name_headers_against_the_body(gw: Bastion, token: str) -> None:
    body = _modern("tools/call", {"name": "list_stock", "arguments": {}})
    good = {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": "list_stock"}
    response = post(gw, body, token, **good)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["resultType"] == "complete"
    mismatch = post(gw, body, token, **{**good, "mcp-name": "refund_order"})
    assert mismatch.status_code == 400 and mismatch.json()["error"]["code"] == -32020
    wrong_method = post(gw, body, token, **{**good, "mcp-method": "tools/list"})
    assert wrong_method.status_code == 400 and wrong_method.json()["error"]["code"] == -32020


def test_unsupported_protocol_version_is_refused_with_the_supported_list(gw: Bastion, token: str) -> None:
    body = _modern("tools/list", {}, version="2099-01-01")
    response = post(gw, body, token, **{"mcp-protocol-version": "2099-01-01", "mcp-method": "tools/list"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32022 and "2026-07-28" in error["data"]["supported"]


def test_stateless_notifications_are_told_an_unknown_version_and_posted_responses_are_refused(
    gw: Bastion, token: str
) -> None:
    """2026-07-28 defines no client notifications here: one is dropped (202) once its version is served,
    an unknown version is told so as for a request, and a posted response is an invalid request
    (input is answered in the retried request). Both were 202 before, whatever they carried."""
    notice = {"jsonrpc": "2.0", "method": "notifications/progress", "params": {}}
    headers = {"mcp-protocol-version": "2026-07-28", "mcp-method": "notifications/progress"}
    assert post(gw, notice, token, **headers).status_code == 202
    unknown = post(gw, notice, token, **{**headers, "mcp-protocol-version": "2099-01-01"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == -32022 and "2026-07-28" in unknown.json()["error"]["data"]["supported"]
    reply = post(gw, {"jsonrpc": "2.0", "id": 1, "result": {}}, token, **{"mcp-protocol-version": "2026-07-28"})
    assert reply.status_code == 400 and reply.json()["error"]["code"] == -32600
    assert "posts no responses" in reply.json()["error"]["message"]


def test_server_discover_answers_without_a_session(gw: Bastion, token: str) -> None:
    body = _modern("server/discover", {})
    response = post(gw, body, token, **{"mcp-protocol-version": "2026-07-28", "mcp-method": "server/discover"})
    result = response.json()["result"]
    assert "2026-07-28" in result["supportedVersions"] and "tools" in result["capabilities"]
    assert "mcp-session-id" not in response.headers


def test_security_headers_are_on_every_mcp_response(gw: Bastion, token: str) -> None:
    for response in (post(gw, INIT, token), post(gw, INIT, None), post(gw, b"{", token)):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "server" not in response.headers
        assert "strict-transport-security" not in response.headers  # plain HTTP: no HSTS
        assert "access-control-allow-origin" not in response.headers


def test_request_id_is_echoed_when_valid_and_minted_otherwise(gw: Bastion, token: str) -> None:
    assert post(gw, INIT, token, **{"x-request-id": "trace-123"}).headers["x-request-id"] == "trace-123"
    minted = post(gw, INIT, token, **{"x-request-id": "bad id\twith spaces"}).headers["x-request-id"]
    assert minted != "bad id\twith spaces" and len(minted) == 32


def test_wrong_http_method_is_405(gw: Bastion, token: str) -> None:
    response = gw.http.put("/servers/hard/mcp", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 405
    modern_get = gw.http.get(
        "/servers/hard/mcp",
        headers={"authorization": f"Bearer {token}", "mcp-protocol-version": "2026-07-28", **ACCEPT},
    )
    assert modern_get.status_code == 405 and modern_get.headers["allow"] == "POST"


def test_stdio_origins_get_a_minimal_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_TEST_SECRET_IN_PARENT_ENV", "do-not-leak")
    with run_bastion(tmp_path) as bastion:
        import sys

        bastion.add_origin("probe", command=[sys.executable, "-m", "tests.origins.probe"])
        bastion.publish_server("probe", {"origin": "probe", "items": ["secret_env"]})
        token = bastion.token("probe")
        session = bastion.http.post(
            "/servers/probe/mcp", json=INIT, headers={**ACCEPT, "authorization": f"Bearer {token}"}
        ).headers["mcp-session-id"]
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "secret_env", "arguments": {}}}
        response = bastion.http.post(
            "/servers/probe/mcp",
            json=call,
            headers={**ACCEPT, "authorization": f"Bearer {token}", "mcp-session-id": session},
        )
        names = response.json()["result"]["content"][0]["text"].split(",")
        assert "BASTION_TEST_SECRET_IN_PARENT_ENV" not in names
        assert "PATH" in names


def _event_data(response: httpx.Response) -> Any:
    assert response.headers["content-type"] == "text/event-stream", response.headers
    [data] = [line[len("data: ") :] for line in response.text.splitlines() if line.startswith("data: ")]
    return json.loads(data)


def test_a_client_that_takes_only_an_event_stream_gets_its_replies_as_events(gw: Bastion, token: str) -> None:
    """Some clients and proxies send `Accept: text/event-stream` alone: they are not sent JSON."""
    only_sse = {"accept": "text/event-stream"}
    initialized = post(gw, INIT, token, **only_sse)
    assert initialized.status_code == 200
    assert _event_data(initialized)["result"]["protocolVersion"] == "2025-11-25"
    session = {"mcp-session-id": initialized.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
    listed = post(gw, listing, token, **session, **only_sse)
    assert listed.status_code == 200 and _event_data(listed)["id"] == 2
    assert "list_stock" in {tool["name"] for tool in _event_data(listed)["result"]["tools"]}
    refused = {"accept": "text/event-stream, application/json;q=0"}  # JSON marked unacceptable
    assert _event_data(post(gw, listing, token, **session, **refused))["id"] == 2
    for takes_json in ("application/json, text/event-stream", "*/*", "application/json"):
        answer = post(gw, listing, token, **session, accept=takes_json)
        assert answer.headers["content-type"] == "application/json" and answer.json()["id"] == 2, takes_json


def test_a_request_id_still_in_use_in_the_session_is_refused(gw: Bastion, token: str) -> None:
    """A second request under the id of one still running would take its place (its cancellation, its
    end): refused with -32600, and the first still answers."""
    session = open_session(gw, token)
    headers = {"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"}
    slow = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "slow_count", "arguments": {"n": 20}}}
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(post, gw, slow, token, **headers)
        time.sleep(0.3)  # the first call is under way (a second of counting)
        again = post(gw, {**slow, "params": {"name": "list_stock", "arguments": {}}}, token, **headers)
        assert again.status_code == 400, again.text
        assert again.json()["error"]["code"] == -32600 and "already in use" in again.json()["error"]["message"]
        answered = first.result(timeout=30)
    assert answered.status_code == 200 and '"result"' in answered.text

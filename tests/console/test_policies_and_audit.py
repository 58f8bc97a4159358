"""The console's policies and audit pages, against a real Bastion, a real origin and the official SDK client.

Calls go through a published server (one allowed, one refused by DLP, one to a tool that does
not exist), then the audit pages must show exactly what the API's trail holds; the policy form
must store what the API would and refuse, inline and storing nothing, what the API refuses.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
from mcp import MCPError

from bastion.console.audit import to_us
from bastion.console.policies import EXAMPLES, STAGES
from bastion.pipeline.config import STAGE_SETTINGS, validate_settings
from tests.console.client import Console, inline_errors
from tests.harness import Bastion, eventually, origin_process, run_bastion

AKIA = "AKIAIOSFODNN7EXAMPLE"  # AWS's documented example key: DLP blocks it in arguments by default
AUDITOR_PASSWORD = "a long enough password 123"


class _Tables(HTMLParser):
    """The text of each body row of each table on a page, cell by cell."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _rows(text: str) -> list[list[str]]:
    parser = _Tables()
    parser.feed(text)
    return parser.rows


def _records(text: str) -> list[dict[str, str]]:
    """The audit page's results table, as {column: text}."""
    table = text.split("<h2>Records", 1)[1]
    columns = ("time", "kind", "principal", "server", "method", "target", "decision", "reason", "status", "latency")
    return [dict(zip(columns, row, strict=True)) for row in _rows(table) if len(row) == len(columns)]


def _timeline(text: str) -> list[tuple[str, str]]:
    """(the li's class, its heading) for each step of a trace page's timeline, in page order."""
    timeline = text.split('<ol class="timeline">', 1)[1].split("</ol>", 1)[0]
    return [
        (css or "", " ".join(re.sub(r"<[^>]+>", " ", title).split()))
        for css, title in re.findall(r'<li(?: class="([a-z]+)")?>\s*<h3>(.*?)</h3>', timeline, re.S)
    ]


def _local(us: int) -> str:
    """POSIX microseconds as a datetime-local value in UTC (what a browser sends), to the minute."""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M")


def _strict(text: str) -> None:
    """Nothing the CSP would refuse: no inline script, style or event handler."""
    assert "<script>" not in text and "<style" not in text and " style=" not in text
    assert not re.search(r"\son[a-z]+=", text)


async def _make_calls(gw: Bastion, token: str) -> None:
    async with gw.client("demo", token) as client:
        allowed = await client.call_tool("get_order", {"order_id": "ORD-1001"})
        assert not allowed.is_error
        with pytest.raises(MCPError):  # a cloud key in the arguments: DLP's default blocks the call
            await client.call_tool("get_order", {"order_id": AKIA})
        with pytest.raises(MCPError):
            await client.call_tool("no_such_tool", {})

    async def stored() -> bool:
        records = gw.ok("GET", "/api/audit/records", params={"kind": "mcp.request"})
        calls = [r for r in records if r["method"] == "tools/call"]
        upstream = gw.ok("GET", "/api/audit/records", params={"kind": "upstream.call"})
        return len(calls) == 3 and len(upstream) >= 1

    await eventually(stored)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    """A console-enabled Bastion publishing the demo inventory as `demo`, with three calls in its trail."""
    tmp: Path = tmp_path_factory.mktemp("console-audit")
    with origin_process() as inventory, run_bastion(tmp, admin_ui=True) as bastion:
        bastion.add_origin("inventory", url=inventory)
        bastion.publish_server("demo", {"origin": "inventory"})
        anyio.run(_make_calls, bastion, bastion.token("demo"))
        bastion.ok(
            "POST", "/api/users", json={"username": "audrey", "password": AUDITOR_PASSWORD, "roles": ["auditor"]}
        )
        bastion.ok("POST", "/api/users", json={"username": "max", "password": AUDITOR_PASSWORD, "roles": ["member"]})
        yield bastion


@pytest.fixture(scope="module")
def admin(gw: Bastion) -> Iterator[Console]:
    session = Console(gw)
    yield session
    session.close()


@pytest.fixture(scope="module")
def auditor(gw: Bastion) -> Iterator[Console]:
    session = Console(gw, "audrey", AUDITOR_PASSWORD)
    yield session
    session.close()


def _call_record(gw: Bastion, decision: str, target: str) -> dict[str, Any]:
    (record,) = gw.ok(
        "GET", "/api/audit/records", params={"kind": "mcp.request", "decision": decision, "target": target}
    )
    return dict(record)


# --- audit -------------------------------------------------------------------------------------


def test_the_audit_page_lists_the_calls_newest_first_and_filters_by_decision(admin: Console, gw: Bastion) -> None:
    answer = admin.get("/admin/audit", params={"kind": "mcp.request"})
    assert answer.status_code == 200 and "no-store" in answer.headers["cache-control"]
    _strict(answer.text)
    calls = [r for r in _records(answer.text) if r["method"] == "tools/call"]
    assert [(r["target"], r["decision"]) for r in calls] == [
        ("no_such_tool", "error"),
        ("get_order", "deny"),
        ("get_order", "allow"),
    ]
    assert all(r["server"] == "demo" and r["kind"] == "mcp.request" for r in calls)
    assert "data loss prevention" in calls[1]["reason"] and calls[2]["status"] == "ok"
    assert float(calls[2]["latency"]) > 0
    # Each row links to its request's trace.
    allowed = _call_record(gw, "allow", "get_order")
    assert f'href="/admin/audit/trace/{allowed["correlation_id"]}"' in answer.text

    denied = _records(admin.get("/admin/audit", params={"decision": "deny"}).text)
    assert [(r["target"], r["decision"]) for r in denied] == [("get_order", "deny")]
    errors = _records(admin.get("/admin/audit", params={"decision": "error", "kind": "mcp.request"}).text)
    assert {r["target"] for r in errors} == {"no_such_tool"} and all(r["decision"] == "error" for r in errors)
    # Records name people by user id; the page shows their username and takes either in the filter.
    by_id = _records(admin.get("/admin/audit", params={"principal": allowed["principal"], "kind": "mcp.request"}).text)
    assert by_id and all(r["principal"] == "admin" for r in by_id)
    by_name = _records(admin.get("/admin/audit", params={"principal": "admin", "kind": "mcp.request"}).text)
    assert [r["time"] for r in by_name] == [r["time"] for r in by_id]
    nobody = admin.get("/admin/audit", params={"principal": "nobody-at-all"})
    assert nobody.status_code == 200 and _records(nobody.text) == [] and "No record matches" in nobody.text

    limited = _records(admin.get("/admin/audit", params={"limit": "1", "target": "get_order"}).text)
    assert [r["decision"] for r in limited] == ["deny"]  # the newest


def test_the_kind_filter_offers_the_consoles_own_requests_too(admin: Console) -> None:
    offered = re.findall(r'<option value="([a-z]+\.[a-z]+)">', admin.get("/admin/audit").text)
    assert "console.request" in offered, offered
    mine: list[dict[str, str]] = []
    for _ in range(50):  # records reach the store within a second of the request
        mine = _records(admin.get("/admin/audit", params={"kind": "console.request"}).text)
        if mine:
            break
        time.sleep(0.2)
    assert mine and all(r["kind"] == "console.request" for r in mine)  # its own pages, at least


def test_the_time_filters_take_datetime_local_values_in_utc(admin: Console, gw: Bastion) -> None:
    allowed = _call_record(gw, "allow", "get_order")
    assert to_us("1970-01-01T00:01") == 60_000_000 and to_us("2025-01-31T14:05:30") == 1_738_332_330_000_000
    at_us = allowed["at_us"]
    minute = at_us - at_us % 60_000_000  # the form's datetime-local precision: minutes
    since = _local(minute)
    within = _records(admin.get("/admin/audit", params={"since": since, "target": "get_order"}).text)
    assert {r["decision"] for r in within} == {"allow", "deny"}
    before = _records(admin.get("/admin/audit", params={"until": since, "target": "get_order"}).text)
    assert before == []
    refused = admin.get("/admin/audit", params={"since": "yesterday"})
    assert refused.status_code == 422 and any("not a date and time" in e for e in inline_errors(refused.text))


def test_the_trace_page_shows_the_inbound_request_then_its_downstream_call(admin: Console, gw: Bastion) -> None:
    allowed = _call_record(gw, "allow", "get_order")
    expected = gw.ok("GET", "/api/audit/records", params={"correlation_id": allowed["correlation_id"]})
    assert {r["kind"] for r in expected} == {"mcp.request", "upstream.call"}, expected
    answer = admin.get(f"/admin/audit/trace/{allowed['correlation_id']}")
    assert answer.status_code == 200
    _strict(answer.text)
    assert _timeline(answer.text) == [("", "Inbound request allow"), ("", "Downstream call to inventory allow")]
    # The inbound record's pipeline decisions, stage by stage, and the digest (never the arguments).
    stages = [row[0] for row in _rows(answer.text) if len(row) == 5]
    assert stages[:2] == ["rate_limit", "schema_guard"] and "forward" in stages
    assert allowed["args_digest"][:16] in answer.text and "ORD-1001" not in answer.text

    denied = _call_record(gw, "deny", "get_order")
    refused = admin.get(f"/admin/audit/trace/{denied['correlation_id']}")
    assert _timeline(refused.text) == [("deny", "Inbound request deny")]  # it never reached the origin
    assert "data loss prevention" in refused.text and AKIA not in refused.text

    unknown = admin.get("/admin/audit/trace/no-such-correlation-id")
    assert unknown.status_code == 404 and "no audit record" in unknown.text


def test_the_export_streams_the_same_json_lines_as_the_api(admin: Console, gw: Bastion) -> None:
    page = admin.get("/admin/audit", params={"kind": "mcp.request", "decision": "deny"}).text
    link = re.search(r'href="(/admin/audit/export\?[^"]*)"', page)
    assert link, page
    assert parse_qs(urlsplit(html.unescape(link.group(1))).query) == {"kind": ["mcp.request"], "decision": ["deny"]}
    for filters, api_filters in (
        ({"kind": "mcp.request", "decision": "deny"}, {"kind": "mcp.request", "decision": "deny"}),
        ({"kind": "upstream.call"}, {"kind": "upstream.call"}),
        (
            {"kind": "mcp.request", "since": "2000-01-01T00:00", "until": "2100-01-01T00:00"},
            {"kind": "mcp.request", "since_us": "946684800000000", "until_us": "4102444800000000"},
        ),
    ):
        exported = admin.get("/admin/audit/export", params=filters)
        assert exported.status_code == 200, exported.text
        assert exported.headers["content-type"].startswith("application/x-ndjson")
        assert "attachment" in exported.headers["content-disposition"]
        api = gw.api("GET", "/api/audit/export", params=api_filters)
        assert exported.content and exported.content == api.content, filters
    denials = admin.get("/admin/audit/export", params={"kind": "mcp.request", "decision": "deny"}).text.splitlines()
    assert len(denials) == 1 and '"target":"get_order"' in denials[0]
    assert admin.get("/admin/audit/export", params={"since": "2999-01-01T00:00"}).content == b""


def test_the_chain_is_verified_when_asked(admin: Console, gw: Bastion) -> None:
    plain = admin.get("/admin/audit").text
    assert "Verify chain" in plain and 'id="chain-status"' not in plain  # the walk runs only when asked
    before = len(gw.api("GET", "/api/audit/export").text.splitlines())
    checked = admin.get("/admin/audit", params={"verify": "1", "kind": "mcp.request"})
    assert checked.status_code == 200
    status = re.search(r'<p id="chain-status">(.*?)</p>', checked.text, re.S)
    assert status, checked.text
    assert "intact" in status.group(1) and "Broken" not in status.group(1)
    count = re.search(r"<strong>(\d+)</strong> records checked", status.group(1))
    after = len(gw.api("GET", "/api/audit/export").text.splitlines())
    assert count and before <= int(count.group(1)) <= after  # every record in the store when it walked
    assert {r["kind"] for r in _records(checked.text)} == {"mcp.request"}  # the search still applies
    # Asked again at once (a reload), the walk is not run again: the trail is read at most every 10 s.
    deadline = time.monotonic() + 10
    while len(gw.api("GET", "/api/audit/export").text.splitlines()) <= int(count.group(1)):
        assert time.monotonic() < deadline, "no new record reached the store"
        time.sleep(0.1)
    again = admin.get("/admin/audit", params={"verify": "1"}).text
    assert f"<strong>{count.group(1)}</strong> records checked" in again
    assert "walked at most once every 10 seconds" in again


# --- policies ----------------------------------------------------------------------------------


def test_every_stage_is_described_with_an_example_it_accepts() -> None:
    assert set(STAGES) == set(STAGE_SETTINGS) == set(EXAMPLES)
    for stage, example in EXAMPLES.items():
        assert validate_settings(stage, example, {}) == example


def test_the_policy_form_stores_a_rate_limit_then_edits_and_deletes_it(admin: Console, gw: Bastion) -> None:
    listing = admin.get("/admin/policies")
    assert listing.status_code == 200
    _strict(listing.text)
    # Each stage is listed with what it does; the form shows what to type for rate limits and DLP.
    for stage in STAGE_SETTINGS:
        assert f'id="stage-{stage}"' in listing.text and f'<option value="{stage}"' in listing.text
    assert "30/minute" in listing.text and "ticket_id" in listing.text and "aws_access_key" in listing.text

    saved = admin.post(
        "/admin/policies",
        {"scope": "server:sales", "stage": "rate_limit", "settings": '{"per_principal": "30/minute"}'},
    )
    assert saved.status_code == 303 and saved.headers["location"] == "/admin/policies?notice=saved"
    stored = [p for p in gw.ok("GET", "/api/policies") if p["scope"] == "server:sales"]
    assert [(p["stage"], p["settings"], p["updated_by"]) for p in stored] == [
        ("rate_limit", {"per_principal": "30/minute"}, "admin")
    ]
    shown = admin.get("/admin/policies?notice=saved").text
    assert "The policy is stored" in shown
    row = next(r for r in _rows(shown) if r and r[0] == "server:sales")
    assert row[1] == "rate_limit" and '"per_principal": "30/minute"' in row[2]

    # The edit link loads the stored settings into the form.
    editing = admin.get("/admin/policies", params={"scope": "server:sales", "stage": "rate_limit"}).text
    textarea = re.search(r'<textarea name="settings"[^>]*>(.*?)</textarea>', editing, re.S)
    assert textarea and "30/minute" in textarea.group(1)
    changed = admin.post(
        "/admin/policies", {"scope": "server:sales", "stage": "rate_limit", "settings": '{"per_tool": "5/second"}'}
    )
    assert changed.status_code == 303
    stored = [p for p in gw.ok("GET", "/api/policies") if p["scope"] == "server:sales"]
    assert [p["settings"] for p in stored] == [{"per_tool": "5/second"}]  # replaced, as PUT does

    deleted = admin.post("/admin/policies/delete", {"scope": "server:sales", "stage": "rate_limit"})
    assert deleted.status_code == 303 and deleted.headers["location"] == "/admin/policies?notice=deleted"
    assert not [p for p in gw.ok("GET", "/api/policies") if p["scope"] == "server:sales"]
    again = admin.post("/admin/policies/delete", {"scope": "server:sales", "stage": "rate_limit"})
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"stage": "rate_limit", "settings": '{"per_principal": 30/minute}'}, "settings", "not valid JSON"),
        ({"stage": "rate_limit", "settings": '["30/minute"]'}, "settings", "JSON object"),
        ({"stage": "rate_limit", "settings": '{"per_principal": "30 a minute"}'}, "settings", "per_principal:"),
        ({"stage": "dlp", "settings": '{"request": {"emial": "block"}}'}, "settings", "unknown detectors ['emial']"),
        ({"stage": "dlp", "settings": '{"request": {"email": "shred"}}'}, "settings", "request.email:"),
        ({"stage": "inspect", "settings": '{"max_result_bytes": NaN}'}, "settings", "not valid JSON"),
        ({"stage": "rate_limit", "settings": "[" * 100_000}, "settings", "nested too deeply"),  # not a 500
        ({"stage": "rate_limit", "scope": "team:x", "settings": "{}"}, "scope", "invalid policy scope"),
        ({"stage": "firewall", "settings": "{}"}, "stage", "unknown stage"),
    ],
)
def test_the_policy_form_refuses_what_the_stage_refuses_inline_and_stores_nothing(
    admin: Console, gw: Bastion, form: dict[str, str], field: str, message: str
) -> None:
    before = gw.ok("GET", "/api/policies")
    answer = admin.post("/admin/policies", {"scope": "server:refused", **form})
    assert answer.status_code == 422
    errors = [html.unescape(error) for error in inline_errors(answer.text)]
    assert len(errors) == 1 and message in errors[0], errors
    # Next to the field it belongs to, with what was typed kept in the form.
    assert re.search(rf'name="{field}".*?class="error" role="alert">', answer.text, re.S)
    textarea = re.search(r'<textarea name="settings"[^>]*>(.*?)</textarea>', answer.text, re.S)
    assert textarea and html.unescape(textarea.group(1)) == form["settings"]
    assert gw.ok("GET", "/api/policies") == before


def test_an_auditor_reads_policies_and_the_trail_but_cannot_change_a_policy(
    auditor: Console, admin: Console, gw: Bastion
) -> None:
    admin.post("/admin/policies", {"scope": "server:kept", "stage": "approval", "settings": '{"mode": "always"}'})
    listing = auditor.get("/admin/policies")
    assert listing.status_code == 200 and "server:kept" in listing.text
    assert 'action="/admin/policies"' not in listing.text and "/admin/policies/delete" not in listing.text
    assert "<textarea" not in listing.text
    before = gw.ok("GET", "/api/policies")
    refused = auditor.post("/admin/policies", {"scope": "global", "stage": "rate_limit", "settings": "{}"})
    assert refused.status_code == 403 and "policies:manage" in refused.text
    removal = auditor.post("/admin/policies/delete", {"scope": "server:kept", "stage": "approval"})
    assert removal.status_code == 403
    assert gw.ok("GET", "/api/policies") == before

    trail = auditor.get("/admin/audit", params={"kind": "mcp.request", "verify": "1"})
    assert trail.status_code == 200 and "get_order" in trail.text and "intact" in trail.text
    allowed = _call_record(gw, "allow", "get_order")
    assert auditor.get(f"/admin/audit/trace/{allowed['correlation_id']}").status_code == 200
    exported = auditor.get("/admin/audit/export", params={"kind": "mcp.request", "decision": "deny"})
    assert exported.text.count("\n") == 1 and '"target":"get_order"' in exported.text


def test_a_member_without_those_permissions_is_refused_both_pages(gw: Bastion) -> None:
    member = Console(gw, "max", AUDITOR_PASSWORD)
    try:
        for path in ("/admin/policies", "/admin/audit", "/admin/audit/export", "/admin/audit/trace/x"):
            answer = member.get(path)
            assert answer.status_code == 403, path
        assert member.post("/admin/policies", {"scope": "global", "stage": "dlp", "settings": "{}"}).status_code == 403
    finally:
        member.close()

"""2026-07-28 `Mcp-Param-*` headers: a tool argument its schema marks with `x-mcp-header` travels in a
header too. Bastion refuses a call whose header disagrees with its body (a proxy in front of it may
have routed on the header), and sends the header the origin's schema asks for (the origin refuses
the call without it). The origin is the SDK's own server, which checks them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import mcp_types as mt
import pytest

from tests.harness import Bastion, origin_process, run_bastion

pytestmark = pytest.mark.anyio

MODERN = "2026-07-28"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with origin_process("tests.origins.probe") as url, run_bastion(tmp_path_factory.mktemp("params")) as bastion:
        bastion.add_origin("probe", url=url)
        bastion.publish_server("params", {"origin": "probe", "items": ["regional"], "aliases": {"regional": "where"}})
        yield bastion


def _call(gw: Bastion, arguments: dict[str, Any], headers: list[tuple[str, str]]) -> httpx.Response:
    """A 2026-07-28 `tools/call` of `where` with `headers` added as given (a name may repeat)."""
    meta = {mt.PROTOCOL_VERSION_META_KEY: MODERN, mt.CLIENT_CAPABILITIES_META_KEY: {}}
    params = {"name": "where", "arguments": arguments, "_meta": meta}
    sent = httpx.Headers(
        [
            ("authorization", f"Bearer {gw.token('params')}"),
            ("accept", "application/json, text/event-stream"),
            ("mcp-protocol-version", MODERN),
            ("mcp-method", "tools/call"),
            ("mcp-name", "where"),
            *headers,
        ]
    )
    return gw.http.post(
        gw.mcp_url("params"), json={"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params}, headers=sent
    )


async def test_the_sdk_client_sends_the_header_and_bastion_sends_the_origin_its_own(gw: Bastion) -> None:
    async with gw.client("params", gw.token("params"), mode=MODERN) as client:
        listed = await client.list_tools()
        [tool] = listed.tools
        assert tool.name == "where" and tool.input_schema["properties"]["region"]["x-mcp-header"] == "Region"
        result = await client.call_tool("where", {"region": "eu-west", "note": "n"})
    assert not result.is_error, result
    [content] = result.content
    assert isinstance(content, mt.TextContent) and content.text == "region=eu-west note=n"  # the origin agreed


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ([("mcp-param-region", "us-east")], "Mcp-Param-Region header does not match the request body's 'region'"),
        ([], "Mcp-Param-Region header is missing but the request body's 'region' argument is present"),
        ([("mcp-param-region", "=?base64?####?=")], "malformed base64"),
        ([("mcp-param-region", "eu-west")] * 2, "mcp-param-region header appears more than once"),
    ],
)
def test_a_header_that_disagrees_with_the_body_is_refused(
    gw: Bastion, headers: list[tuple[str, str]], why: str
) -> None:
    answered = _call(gw, {"region": "eu-west"}, headers)
    assert answered.status_code == 400, answered.text
    error = answered.json()["error"]
    assert error["code"] == mt.HEADER_MISMATCH and why in error["message"]


def test_a_header_that_agrees_with_the_body_passes(gw: Bastion) -> None:
    agreeing = _call(gw, {"region": "eu-west"}, [("mcp-param-region", "eu-west")])
    assert agreeing.status_code == 200, agreeing.text
    assert agreeing.json()["result"]["content"][0]["text"] == "region=eu-west note="

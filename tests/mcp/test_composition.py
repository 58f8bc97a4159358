"""Composition: one virtual server over an HTTP and a stdio origin, prefixes, aliases, enable/disable."""

from __future__ import annotations

import sys

import mcp_types as mt
import pytest
from mcp import MCPError

from tests.harness import STDIO_INVENTORY, Bastion, origin_process

pytestmark = pytest.mark.anyio


async def test_http_and_stdio_origins_compose_into_one_server_with_prefixes_and_aliases(bastion: Bastion) -> None:
    with origin_process() as url:
        bastion.add_origin("web", url=url)
        bastion.add_origin("local", command=STDIO_INVENTORY)
        bastion.publish_server(
            "mix",
            {"origin": "web", "prefix": "web_", "items": ["list_stock", "get_order", "inventory://warehouses"]},
            {
                "origin": "local",
                "prefix": "local_",
                "items": ["get_order", "reorder_advice"],
                "aliases": {"get_order": "lookup_order"},
            },
        )
        token = bastion.token("mix")
        for mode in ("legacy", "2026-07-28"):
            async with bastion.client("mix", token, mode=mode) as client:
                names = sorted(t.name for t in (await client.list_tools()).tools)
                assert names == ["lookup_order", "web_get_order", "web_list_stock"]
                via_http = await client.call_tool("web_get_order", {"order_id": "ORD-1001"})
                via_stdio = await client.call_tool("lookup_order", {"order_id": "ORD-1001"})
                assert not via_http.is_error and not via_stdio.is_error
                assert via_http.structured_content == via_stdio.structured_content
                prompts = [p.name for p in (await client.list_prompts()).prompts]
                assert prompts == ["local_reorder_advice"]
                prompt = await client.get_prompt("local_reorder_advice", {"sku": "WID-001"})
                assert "WID-001" in str(prompt.messages[0].content)
                resources = [str(r.uri) for r in (await client.list_resources()).resources]
                assert resources == ["inventory://warehouses"]
                read = await client.read_resource("inventory://warehouses")
                assert "AMS-1" in read.contents[0].text  # type: ignore[union-attr]


async def test_a_tool_that_was_not_selected_cannot_be_called(bastion: Bastion) -> None:
    bastion.add_origin("local", command=STDIO_INVENTORY)
    bastion.publish_server("narrow", {"origin": "local", "items": ["list_stock"]})
    async with bastion.client("narrow", bastion.token("narrow")) as client:
        assert [t.name for t in (await client.list_tools()).tools] == ["list_stock"]
        with pytest.raises(MCPError) as caught:
            await client.call_tool("refund_order", {"order_id": "ORD-1001", "amount": 5})
        assert caught.value.error.code == -32602
        assert "unknown tool" in caught.value.error.message


async def test_disabled_item_disappears_and_enabled_item_returns_without_reconnecting(bastion: Bastion) -> None:
    bastion.add_origin("local", command=STDIO_INVENTORY)
    server = bastion.publish_server("toggle", {"origin": "local", "items": ["list_stock", "get_order"]})
    item = next(i for i in server["items"] if i["exposed_name"] == "get_order")
    async with bastion.client("toggle", bastion.token("toggle")) as client:
        bastion.ok("PATCH", f"/api/servers/{server['id']}/items/{item['id']}", json={"enabled": False})
        assert [t.name for t in (await client.list_tools()).tools] == ["list_stock"]
        with pytest.raises(MCPError):
            await client.call_tool("get_order", {"order_id": "ORD-1001"})
        bastion.ok("PATCH", f"/api/servers/{server['id']}/items/{item['id']}", json={"enabled": True, "alias": "order"})
        assert sorted(t.name for t in (await client.list_tools()).tools) == ["list_stock", "order"]
        assert not (await client.call_tool("order", {"order_id": "ORD-1001"})).is_error


async def test_origin_tool_errors_reach_the_client_as_tool_errors(bastion: Bastion) -> None:
    bastion.add_origin("local", command=STDIO_INVENTORY)
    bastion.publish_server("errs", {"origin": "local"})
    async with bastion.client("errs", bastion.token("errs")) as client:
        result = await client.call_tool("get_order", {"order_id": "NOPE"})
        assert result.is_error
        assert "NOPE" in result.content[0].text  # type: ignore[union-attr]


async def test_completion_is_routed_to_the_origin_under_its_own_prompt_name(bastion: Bastion) -> None:
    bastion.add_origin("local", command=STDIO_INVENTORY)
    bastion.publish_server("complete", {"origin": "local", "prefix": "inv_", "items": ["reorder_advice"]})
    async with bastion.client("complete", bastion.token("complete")) as client:
        result = await client.complete(
            mt.PromptReference(type="ref/prompt", name="inv_reorder_advice"), {"name": "sku", "value": "WID"}
        )
        assert result.completion.values == ["WID-001"]
        with pytest.raises(MCPError) as caught:
            await client.complete(
                mt.PromptReference(type="ref/prompt", name="reorder_advice"), {"name": "sku", "value": ""}
            )
        assert caught.value.error.code == -32602


async def test_long_lists_are_paginated_with_cursors(bastion: Bastion) -> None:
    bastion.add_origin("many", command=[sys.executable, "-m", "tests.origins.many_tools"])
    bastion.publish_server("many", {"origin": "many"})
    async with bastion.client("many", bastion.token("many")) as client:
        first = await client.list_tools()
        assert len(first.tools) == 100 and first.next_cursor
        second = await client.list_tools(cursor=first.next_cursor)
        assert len(second.tools) == 50 and second.next_cursor is None
        names = {t.name for t in first.tools} | {t.name for t in second.tools}
        assert names == {f"tool_{i:03d}" for i in range(150)}
        with pytest.raises(MCPError) as caught:
            await client.list_tools(cursor="not-a-cursor")
        assert caught.value.error.code == -32602

"""Demo origin: a tiny supply-chain system exposed as an MCP server.

Bastion needs a realistic upstream to sit in front of: read-only lookups,
side-effecting writes, a destructive money-moving tool, a resource, a prompt,
a progress-reporting tool (to test progress and cancellation pass-through) and
a tool that changes the tool list at runtime (to test `list_changed`).
All state is in memory and per server instance, so tests can build fresh ones.

Run: ``python -m bastion.demo.inventory`` (stdio) or
``python -m bastion.demo.inventory --http --host 127.0.0.1 --port 8001`` (Streamable HTTP at ``/mcp``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
from mcp.server.lowlevel.server import NotificationOptions
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import Completion, CompletionArgument, PromptReference, ToolAnnotations
from pydantic import BaseModel, Field


class StockLevel(BaseModel):
    sku: str
    name: str
    on_hand: int
    reorder_point: int
    warehouse: str


class Order(BaseModel):
    order_id: str
    sku: str
    quantity: int
    total: float
    status: str
    refunded: float = 0.0


class Reorder(BaseModel):
    reorder_id: str
    sku: str
    quantity: int
    status: str


@dataclass
class Inventory:
    """Mutable demo state; one per server so tests never share side effects."""

    stock: dict[str, StockLevel] = field(
        default_factory=lambda: {
            s.sku: s
            for s in (
                StockLevel(sku="WID-001", name="Widget", on_hand=120, reorder_point=50, warehouse="AMS-1"),
                StockLevel(sku="GAD-002", name="Gadget", on_hand=8, reorder_point=20, warehouse="AMS-1"),
                StockLevel(sku="SPR-003", name="Sprocket", on_hand=0, reorder_point=10, warehouse="RTM-2"),
            )
        }
    )
    orders: dict[str, Order] = field(
        default_factory=lambda: {
            o.order_id: o
            for o in (
                Order(order_id="ORD-1001", sku="WID-001", quantity=10, total=99.5, status="shipped"),
                Order(order_id="ORD-1002", sku="GAD-002", quantity=2, total=45.0, status="pending"),
            )
        }
    )
    reorders: list[Reorder] = field(default_factory=lambda: [])
    warehouses: list[dict[str, str]] = field(
        default_factory=lambda: [
            {"id": "AMS-1", "city": "Amsterdam"},
            {"id": "RTM-2", "city": "Rotterdam"},
        ]
    )


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False)
DESTRUCTIVE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False)


def build_server(name: str = "bastion-demo-inventory") -> MCPServer:
    """Build a fresh inventory server with its own in-memory state."""
    inv = Inventory()
    server = MCPServer(name, version="0.1.0", instructions="Demo supply-chain origin.", log_level="WARNING")
    # MCPServer has no public knob for the handshake-era `tools.listChanged` flag, so advertise it by
    # pinning the lowlevel server's init options (used by both stdio and the HTTP session manager).
    lowlevel = server._lowlevel_server  # pyright: ignore[reportPrivateUsage]
    default_init = lowlevel.create_initialization_options

    def init_options(notification_options: NotificationOptions | None = None, *a: Any, **kw: Any) -> Any:
        return default_init(notification_options or NotificationOptions(tools_changed=True), *a, **kw)

    lowlevel.create_initialization_options = init_options  # type: ignore[method-assign]

    @server.tool(annotations=READ_ONLY)
    def list_stock(sku: str | None = None) -> list[StockLevel]:
        """List stock levels, optionally for a single SKU."""
        return [s for s in inv.stock.values() if sku is None or s.sku == sku]

    @server.tool(annotations=READ_ONLY)
    def get_order(order_id: str) -> Order:
        """Fetch one order by id."""
        if order_id not in inv.orders:
            raise ToolError(f"unknown order {order_id!r}")
        return inv.orders[order_id]

    @server.tool(annotations=WRITE)
    def create_reorder(sku: str, quantity: Annotated[int, Field(ge=1, le=10000)]) -> Reorder:
        """Place a purchase reorder for a SKU (side effect: appends to the reorder book)."""
        if sku not in inv.stock:
            raise ToolError(f"unknown sku {sku!r}")
        reorder = Reorder(reorder_id=f"RO-{len(inv.reorders) + 1:04d}", sku=sku, quantity=quantity, status="placed")
        inv.reorders.append(reorder)
        return reorder

    @server.tool(annotations=DESTRUCTIVE)
    def refund_order(order_id: str, amount: Annotated[float, Field(gt=0)]) -> Order:
        """Refund (part of) an order. Destructive: moves money and cannot be undone."""
        order = inv.orders.get(order_id)
        if order is None:
            raise ToolError(f"unknown order {order_id!r}")
        if order.refunded + amount > order.total:
            raise ToolError(f"refund exceeds order total {order.total}")
        order.refunded += amount
        order.status = "refunded" if order.refunded >= order.total else "partially_refunded"
        return order

    @server.tool(annotations=READ_ONLY)
    async def slow_count(n: Annotated[int, Field(ge=1, le=1000)], ctx: Context) -> int:
        """Count to n, reporting progress each step (0.05 s apart) so gateways can test progress/cancel."""
        for i in range(1, n + 1):
            await anyio.sleep(0.05)
            await ctx.report_progress(i, n, f"step {i}/{n}")
        return n

    added: list[str] = []

    @server.tool(annotations=WRITE)
    async def add_feature_tool(ctx: Context) -> str:
        """Register a new tool at runtime and announce it (tests `notifications/tools/list_changed`)."""
        added.append(tool_name := f"feature_{len(added) + 1}")

        def feature() -> str:
            return f"{tool_name} is live"

        server.add_tool(feature, name=tool_name, description="Runtime-added demo tool.", annotations=READ_ONLY)
        # Handshake era: a plain notification on the connection's standalone channel (stdio pipe or
        # the HTTP GET stream). 2026-07-28 era: published on the bus, delivered to subscriptions/listen.
        await ctx.session.send_tool_list_changed()
        await ctx.notify_tools_changed()
        return tool_name

    @server.resource("inventory://warehouses", name="warehouses", mime_type="application/json")
    def warehouses() -> str:
        """Warehouse directory as JSON text."""
        return json.dumps(inv.warehouses)

    @server.prompt()
    def reorder_advice(sku: str) -> str:
        """Ask the model whether a SKU should be reordered, with current stock inlined."""
        s = inv.stock.get(sku)
        facts: dict[str, Any] = s.model_dump() if s else {"sku": sku, "error": "unknown sku"}
        return f"Given this stock record, should we reorder, and how many units?\n{json.dumps(facts)}"

    @server.completion()  # type: ignore[untyped-decorator,no-untyped-call]  # the SDK leaves it unannotated
    async def complete_sku(ref: Any, argument: CompletionArgument, _context: Any) -> Completion | None:
        """Complete the `sku` argument of `reorder_advice` from the SKUs in stock."""
        if isinstance(ref, PromptReference) and ref.name == "reorder_advice" and argument.name == "sku":
            return Completion(values=sorted(k for k in inv.stock if k.startswith(argument.value)))
        return None

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bastion demo inventory origin (stdio by default).")
    parser.add_argument("--http", action="store_true", help="serve Streamable HTTP at /mcp instead of stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args(argv)
    server = build_server()
    if args.http:
        # Stateful + SSE (the defaults): legacy clients get a session and a GET stream for list_changed.
        server.run("streamable-http", host=args.host, port=args.port, streamable_http_path="/mcp")
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()

"""Whom each message Bastion sends an origin is made for: a forwarded request for its caller; a
reply to the origin's own request (a ping), whose id is the origin's and may equal one of
Bastion's, is never looked up by that id: it goes as the gateway unless its sender names the person
(a ping on their call's reply stream: tests/mcp/test_person_sessions.py)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from bastion.catalog.snapshot import OriginSpec
from bastion.mcp.upstream.base import OnBehalf, OriginGuard
from bastion.mcp.upstream.commands import StdioPolicy
from bastion.mcp.upstream.http import HttpOriginClient
from bastion.net.egress import EgressPolicy
from bastion.oauth.origin_tokens import SERVICE_SUBJECT
from bastion.vault.credentials import OriginCredential

pytestmark = pytest.mark.anyio


class _Subjects:
    """A `TokenMinter` whose tokens are the subject they were minted for: what the header says."""

    def mint(self, *, subject: str, **_claims: Any) -> str:
        return subject


async def test_a_reply_to_the_origins_request_goes_as_the_gateway_even_when_its_id_is_a_callers(
    anyio_backend: str,
) -> None:
    spec = OriginSpec(
        "o1", "crm", "http", "http://127.0.0.1:9/mcp", None, None,
        credential=OriginCredential("jwt", audience="https://crm.example/mcp"),
    )  # fmt: skip
    guard = OriginGuard(egress=EgressPolicy(), stdio=StdioPolicy(), tokens=_Subjects())

    async def notify(*_args: Any) -> None:
        return None

    async with anyio.create_task_group() as tasks:
        client = HttpOriginClient(spec, timeout=5, max_bytes=1000, notify=notify, task_group=tasks, guard=guard)
        client._on_behalf[1] = OnBehalf("user-ann", "t1", ("mcp",))  # Bastion's request 1 is Ann's, in flight
        request = client._headers({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}})
        reply = client._headers({"jsonrpc": "2.0", "id": 1, "result": {}})  # to the origin's ping 1
        notification = client._headers({"jsonrpc": "2.0", "method": "notifications/cancelled"})
    assert request["authorization"] == "Bearer user-ann"
    assert reply["authorization"] == notification["authorization"] == f"Bearer {SERVICE_SUBJECT}"

"""A sensitive tool call end to end: elicitation → anonymization → DLP → forward → response
checks → audit, proven by what the origin received and what the audit trail recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mcp_types as mt
import pytest
from mcp import MCPError

from tests.harness import Bastion, eventually, origin_process

pytestmark = pytest.mark.anyio

IBAN = "DE89370400440532013000"
EMAIL = "ann.smith@example.com"


def _person(answers: list[str], action: str = "accept", approve: bool = True) -> Any:
    async def on_elicit(_context: Any, params: mt.ElicitRequestParams) -> mt.ElicitResult:
        answers.append(params.message)
        return mt.ElicitResult(action=action, content={"approve": approve} if action == "accept" else None)

    return on_elicit


def _received(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _payments(bastion: Bastion, url: str) -> str:
    bastion.add_origin("payments", url=url)
    bastion.publish_server("pay", {"origin": "payments"})
    bastion.ok(
        "PUT",
        "/api/policies/anonymize",
        params={"scope": "tool:payments/send_payment"},
        json={"settings": {"enabled": True, "detectors": ["email", "iban"]}},
    )
    return bastion.token("pay")


async def _trail(bastion: Bastion, target: str, decision: str, *, forwarded: bool = False) -> list[dict[str, Any]]:
    """The pipeline trail of the call's audit record (the one that reached the origin, if `forwarded`:
    a 2026-07-28 call's first leg, which only asked the person, has a record of its own)."""
    found: list[list[dict[str, Any]]] = []

    async def landed() -> bool:
        records = bastion.ok(
            "GET", "/api/audit/records", params={"target": target, "kind": "mcp.request", "decision": decision}
        )
        found[:] = [
            r["detail"]["pipeline"]
            for r in records
            if not forwarded or any(d["stage"] == "forward" for d in r["detail"]["pipeline"])
        ]
        return bool(found)

    await eventually(landed)
    return found[0]


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_a_sensitive_call_is_approved_then_anonymized_then_checked_and_audited_in_that_order(
    bastion: Bastion, tmp_path: Path, mode: str
) -> None:
    log = tmp_path / "payments.jsonl"
    asked: list[str] = []
    with origin_process("tests.origins.payments", "--log", str(log)) as url:
        token = _payments(bastion, url)
        async with bastion.client("pay", token, mode=mode, elicitation_callback=_person(asked)) as client:
            result = await client.call_tool("send_payment", {"iban": IBAN, "email": EMAIL, "amount": 120})
    # The person was asked, with the call as the client sent it.
    assert len(asked) == 1 and "send_payment" in asked[0] and EMAIL in asked[0]
    # The origin saw stand-ins, never the IBAN or the address; the amount untouched.
    received = _received(log)
    assert [r["tool"] for r in received] == ["send_payment"]
    sent = received[0]["arguments"]
    assert IBAN not in json.dumps(received) and EMAIL not in json.dumps(received)
    assert sent["email"].endswith("@anonymized.invalid") and sent["iban"].startswith("anon_iban_")
    assert sent["amount"] == 120
    # The client sees its own values again, and not the key the origin leaked.
    text = result.content[0].text  # type: ignore[union-attr]
    assert not result.is_error
    assert f"to {IBAN}" in text and f"sent to {EMAIL}" in text
    assert "AKIAIOSFODNN7EXAMPLE" not in text and "[REDACTED:aws_access_key]" in text
    assert "AKIAIOSFODNN7EXAMPLE" not in json.dumps(result.structured_content)
    # The audit record holds every decision, in the pipeline's order, and none of the values.
    trail = await _trail(bastion, "send_payment", "allow", forwarded=True)
    assert [(d["stage"], d["phase"]) for d in trail] == [
        ("rate_limit", "request"),
        ("schema_guard", "request"),
        ("cedar", "request"),
        ("approval", "request"),
        ("anonymize", "request"),
        ("dlp", "request"),
        ("forward", "forward"),
        ("inspect", "response"),
        ("dlp", "response"),
        ("anonymize", "response"),
        ("approval", "response"),
    ]
    actions = {(d["stage"], d["phase"]): d for d in trail}
    # 2026-07-28: the first leg asked; this retry carried the answer (`modify`: the answer is taken out).
    assert actions[("approval", "request")]["reason"] == "approved by the person"
    assert actions[("anonymize", "request")]["action"] == "modify"
    assert actions[("anonymize", "request")]["kinds"] == ["email", "iban"]
    assert actions[("dlp", "request")]["action"] == "allow"  # nothing personal left to find: stand-ins only
    assert set(actions[("dlp", "response")]["findings"]) == {"aws_access_key"}  # text and structured content
    assert actions[("anonymize", "response")]["action"] == "modify"
    assert IBAN not in json.dumps(trail) and EMAIL not in json.dumps(trail) and "AKIA" not in json.dumps(trail)


@pytest.mark.parametrize("mode", ["2026-07-28", "legacy"])
async def test_a_declined_approval_never_reaches_the_origin_and_is_audited_as_a_denial(
    bastion: Bastion, tmp_path: Path, mode: str
) -> None:
    log = tmp_path / "payments.jsonl"
    asked: list[str] = []
    with origin_process("tests.origins.payments", "--log", str(log)) as url:
        token = _payments(bastion, url)
        async with bastion.client("pay", token, mode=mode, elicitation_callback=_person(asked, "decline")) as client:
            with pytest.raises(MCPError) as caught:
                await client.call_tool("send_payment", {"iban": IBAN, "email": EMAIL, "amount": 5})
            still_reads = await client.call_tool("lookup_customer", {"email": EMAIL})
    assert "was not approved" in caught.value.error.message and "declined" in caught.value.error.message
    assert [r["tool"] for r in _received(log)] == ["lookup_customer"]  # the payment never left
    assert not still_reads.is_error
    trail = await _trail(bastion, "send_payment", "deny")
    assert trail[-1]["stage"] == "approval" and trail[-1]["action"] == "deny" and trail[-1]["outcome"] == "declined"


async def test_a_client_that_cannot_elicit_is_denied_a_side_effecting_call(bastion: Bastion, tmp_path: Path) -> None:
    log = tmp_path / "payments.jsonl"
    with origin_process("tests.origins.payments", "--log", str(log)) as url:
        token = _payments(bastion, url)
        async with bastion.client("pay", token, mode="legacy") as client:
            with pytest.raises(MCPError) as caught:
                await client.call_tool("send_payment", {"iban": IBAN, "email": EMAIL, "amount": 5})
    assert "cannot be asked" in caught.value.error.message
    assert _received(log) == []


def _stateless_call(bastion: Bastion, token: str, arguments: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """One 2026-07-28 tools/call from a client that declares elicitation."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
    }
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "send_payment", "arguments": arguments, **extra, "_meta": meta},
    }
    headers = {
        "authorization": f"Bearer {token}",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "send_payment",
    }
    reply: dict[str, Any] = bastion.http.post("/servers/pay/mcp", json=body, headers=headers).json()
    return reply


async def test_an_approval_is_bound_to_its_arguments_in_the_stateless_revision(
    bastion: Bastion, tmp_path: Path
) -> None:
    """A 2026-07-28 client cannot replay an approval's requestState for a bigger payment."""
    log = tmp_path / "payments.jsonl"
    small = {"iban": IBAN, "email": EMAIL, "amount": 5}
    with origin_process("tests.origins.payments", "--log", str(log)) as url:
        token = _payments(bastion, url)
        first = _stateless_call(bastion, token, small)
        assert first["result"]["resultType"] == "input_required"
        state = first["result"]["requestState"]
        answer = {"bastion.approval": {"action": "accept", "content": {"approve": True}}}
        replayed = _stateless_call(bastion, token, {**small, "amount": 5000}, inputResponses=answer, requestState=state)
        forged = _stateless_call(bastion, token, small, inputResponses=answer, requestState=state[:-4] + "0000")
        approved = _stateless_call(bastion, token, small, inputResponses=answer, requestState=state)
    assert "for another call" in replayed["error"]["message"]
    assert "for another call" in forged["error"]["message"]
    assert approved["result"]["isError"] is False
    assert [r["arguments"]["amount"] for r in _received(log)] == [5]

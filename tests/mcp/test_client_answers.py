"""A handshake-era client's answer to Bastion's question (an origin's elicitation relayed), in whatever
shape it comes, or not at all, is a refusal the call reports: never an exception that cuts its stream."""

from __future__ import annotations

from typing import Any

import anyio
import mcp_types as mt
import pytest

from bastion.errors import UpstreamRejected
from bastion.mcp import sessions
from bastion.mcp.forwarding import _ask_all
from tests.mcp.session_kit import new_session, started_store

pytestmark = pytest.mark.anyio

QUESTION = {"q": {"method": "elicitation/create", "params": {"message": "Refund?"}}}


@pytest.mark.parametrize(
    "reply",
    [
        {"id": "bastion-1", "error": {"code": "x"}},
        {"id": "bastion-1", "error": "nope"},
        {"id": "bastion-1", "error": {"code": None, "message": 5}},
        {"id": "bastion-1", "error": {"code": True}},
        {"id": "bastion-1"},
    ],
)
async def test_a_malformed_answer_is_a_refusal(reply: dict[str, Any]) -> None:
    async def ask(_method: str, _params: dict[str, Any]) -> dict[str, Any]:
        return reply

    with pytest.raises(UpstreamRejected) as refused:
        await _ask_all(ask, QUESTION)
    assert refused.value.code == mt.INTERNAL_ERROR and refused.value.message == "declined"


async def test_a_well_formed_refusal_keeps_its_code_and_words() -> None:
    async def ask(_method: str, _params: dict[str, Any]) -> dict[str, Any]:
        return {"id": "bastion-1", "error": {"code": -1, "message": "the user said no"}}

    with pytest.raises(UpstreamRejected) as refused:
        await _ask_all(ask, QUESTION)
    assert (refused.value.code, refused.value.message) == (-1, "the user said no")


async def test_no_answer_in_time_is_a_timeout_the_call_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions, "ASK_TIMEOUT_SECONDS", 0.05)
    store = await started_store()
    session_id = new_session(store)
    session = store.get(session_id, server_id="s", token_id="t")
    assert session is not None
    sent: list[bytes] = []

    async def emit(message: bytes) -> None:
        sent.append(message)

    with anyio.fail_after(5), pytest.raises(UpstreamRejected) as late:
        await session.ask("elicitation/create", {"message": "Refund?"}, emit)
    assert late.value.code == mt.REQUEST_TIMEOUT and "no answer" in late.value.message
    assert len(sent) == 1 and not session.asks  # asked once, and nothing left waiting

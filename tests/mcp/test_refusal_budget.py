"""Refusals of requests nobody could be identified for are recorded up to a budget per client
address (`BASTION_RATE_LIMIT_MCP_REFUSALS`): past it they are answered as before but not recorded,
so nobody without a token can grow a tenant's audit trail at will."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from tests.harness import STDIO_INVENTORY, Bastion, eventually, run_bastion
from tests.mcp.test_hardening import INIT, post

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("refusals"), rate_limit_mcp_refusals="3/minute") as bastion:
        bastion.add_origin("local", command=STDIO_INVENTORY)
        bastion.publish_server("hard", {"origin": "local"})
        yield bastion


def _refusal_records(gw: Bastion) -> list[dict[str, object]]:
    records = gw.ok("GET", "/api/audit/records", params={"kind": "mcp.request", "limit": 100})
    return [r for r in records if r["principal"] == "" and r["decision"] == "deny"]  # nobody identified


async def test_past_the_budget_a_refusal_is_answered_as_before_and_leaves_no_record(gw: Bastion) -> None:
    answers = [post(gw, INIT, "bst_not-a-real-token") for _ in range(5)]
    # Every one gets its 401 and challenge: a client behind the same address still learns how to get a token.
    assert [a.status_code for a in answers] == [401] * 5
    assert all("resource_metadata=" in a.headers["www-authenticate"] for a in answers)
    assert post(gw, INIT, "bst_still-not-real", origin="https://evil.example").status_code == 403

    async def three_recorded() -> bool:
        return len(await anyio.to_thread.run_sync(lambda: _refusal_records(gw))) == 3

    await eventually(three_recorded)
    await anyio.sleep(1.0)  # the store's rounds are 0.25 s here: a fourth record would have arrived
    assert len(_refusal_records(gw)) == 3
    # Requests someone is identified for are not counted: a valid token still gets its answer.
    assert post(gw, INIT, gw.token("hard")).status_code == 200

"""JSON-RPC framing: the depth limit holds whether or not the bracket count lets the walk be skipped."""

from __future__ import annotations

import orjson
import pytest

from bastion.errors import BadRequest
from bastion.mcp.jsonrpc import decode_body


def nested(depth: int) -> bytes:
    """An object holding lists `depth` containers deep in all."""
    value: object = "x"
    for _ in range(depth - 1):
        value = [value]
    return orjson.dumps({"v": value})


def test_a_document_at_the_limit_passes_and_one_deeper_is_refused() -> None:
    assert decode_body(nested(8), max_depth=8) == orjson.loads(nested(8))
    with pytest.raises(BadRequest, match="nested deeper than 8 levels"):
        decode_body(nested(9), max_depth=8)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    body = orjson.dumps({"text": "[[[[{{{{" * 10, "list": [1, [2, [3]]]})  # 80 brackets in a string, depth 4
    assert decode_body(body, max_depth=4)["list"] == [1, [2, [3]]]
    with pytest.raises(BadRequest, match="nested deeper than 3 levels"):
        decode_body(body, max_depth=3)


def test_fewer_brackets_than_the_limit_need_no_walk_and_stay_within_it() -> None:
    body = orjson.dumps({"params": {"arguments": {"a": [1, 2]}}})  # 4 brackets, depth 4
    assert body.count(b"{") + body.count(b"[") == 4
    assert decode_body(body, max_depth=4) == orjson.loads(body)
    with pytest.raises(BadRequest):
        decode_body(body, max_depth=3)


def test_a_limiter_or_journal_out_of_reach_during_a_call_is_a_503_with_retry_after_in_every_revision() -> None:
    """Only a 429 had its HTTP status: a limiter that could not be reached inside the pipeline
    answered 200 (handshake revisions) with no Retry-After, as if the call itself had failed."""
    from bastion.errors import AuditUnavailable, InvalidParams, TooManyRequests, Unavailable
    from bastion.mcp.challenge import dispatch_status

    for modern in (False, True):
        unavailable = Unavailable("rate limits cannot be checked right now", retry_after=2)
        assert dispatch_status(unavailable, modern=modern) == (503, [(b"retry-after", b"2")])
        journal = AuditUnavailable("the audit journal cannot be written")
        assert dispatch_status(journal, modern=modern) == (503, [(b"retry-after", b"1")])
        limited = TooManyRequests("too many calls", retry_after=7)
        assert dispatch_status(limited, modern=modern) == (429, [(b"retry-after", b"7")])
    assert dispatch_status(InvalidParams("bad"), modern=False) == (200, [])
    assert dispatch_status(InvalidParams("bad"), modern=True)[0] == 400


def test_a_handshake_era_client_sends_no_multi_round_trip_fields_on() -> None:
    """Bastion asks a handshake-era client's questions itself and retries for it: `inputResponses`
    or a `requestState` such a client sends would reach the origin as answers to questions nobody
    asked it (past the relay's screening) and as state no DLP rule reads."""
    from types import SimpleNamespace
    from typing import cast

    from bastion.mcp.methods import Call, round_trip

    params = {"name": "t", "arguments": {}, "inputResponses": {"q": {"action": "accept"}}, "requestState": "AKIA"}
    assert round_trip(cast(Call, SimpleNamespace(modern=False)), params) == {}
    modern = round_trip(cast(Call, SimpleNamespace(modern=True)), params)
    assert modern == {"inputResponses": {"q": {"action": "accept"}}, "requestState": "AKIA"}

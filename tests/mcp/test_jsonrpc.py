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

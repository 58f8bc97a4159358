"""A request that may change something is answered only once its record is durable: every method but
the safe ones, and the GETs of OAuth's redirects (a callback, an authorization that issues a code)."""

from __future__ import annotations

import anyio
import pytest

from bastion.audit.chain import AuditRecord
from bastion.http.asgi import Message, Receive, Scope, Send
from bastion.http.request_audit import RequestTrail

pytestmark = pytest.mark.anyio


class _HeldSink:
    """Records whose durability the test releases: the ordering is what is tested, not the journal."""

    def __init__(self) -> None:
        self.durable = anyio.Event()
        self.seen = anyio.Event()  # the response began: its record was made
        self.recorded: list[AuditRecord] = []

    def record(self, tenant_id: str, record: AuditRecord) -> _HeldSink:
        self.recorded.append(record)
        self.seen.set()
        return self

    async def wait(self) -> None:
        await self.durable.wait()

    async def commit(self, tenant_id: str, record: AuditRecord) -> None:
        raise AssertionError("not used here")


async def _app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 303, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def _answered_before_durable(method: str, path: str) -> bool:
    sink = _HeldSink()
    trail = RequestTrail(_app, sink=sink, fallback_tenant="default")
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope: Scope = {"type": "http", "method": method, "path": path, "headers": [], "query_string": b""}
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(trail, scope, receive, send)
        with anyio.fail_after(5):
            await sink.seen.wait()
        answered = bool(sent)  # what follows the record with no wait in between has happened by now
        sink.durable.set()
    assert len(sink.recorded) == 1 and sent  # recorded once, answered in the end
    return answered


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/tokens"),
        ("GET", "/connect/abc/callback"),
        ("GET", "/oauth/federate/idp/callback"),
        ("GET", "/oauth/authorize"),
    ],
)
async def test_what_may_change_something_waits_for_its_record(method: str, path: str) -> None:
    assert not await _answered_before_durable(method, path)


@pytest.mark.parametrize(("method", "path"), [("GET", "/api/tokens"), ("GET", "/auth/consents")])
async def test_a_read_is_answered_without_waiting(method: str, path: str) -> None:
    assert await _answered_before_durable(method, path)

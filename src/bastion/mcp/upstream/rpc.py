"""The JSON-RPC client core shared by both origin transports.

Hand-written rather than the SDK's `ClientSession` because a gateway forwards
already-parsed requests from many callers over one shared origin connection:
it needs its own request ids, progress-token rewriting and cancellation
mapping, and the SDK session's per-call machinery costs more CPU than the whole
budget for a forwarded call (measured by `make bench`, see README). Protocol
messages are still validated with `mcp_types`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as mt
import orjson
import structlog
from mcp_types.version import LATEST_HANDSHAKE_VERSION, LATEST_MODERN_VERSION, MODERN_PROTOCOL_VERSIONS
from pydantic import ValidationError

from bastion import __version__
from bastion.catalog.param_headers import ParamHeaders
from bastion.catalog.snapshot import OriginSpec
from bastion.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRefused,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from bastion.mcp.jsonrpc import is_request_id
from bastion.mcp.upstream.base import NotificationSink, OnBehalf, ProgressSink

__all__ = ["CLIENT_INFO", "RpcCore", "decode_message"]

log = structlog.get_logger(__name__)

CLIENT_INFO = {"name": "bastion", "version": __version__}
_CANCEL_NOTICE_SECONDS = 2.0
_DISCOVER_SECONDS = 10.0
_DELIVER_SECONDS = 1.0  # how long one caller's stream may hold the shared reader (see `_deliver`)
LIST_CHANGED_FILTER = {"toolsListChanged": True, "promptsListChanged": True, "resourcesListChanged": True}


@dataclass(slots=True)
class _Pending:
    # asyncio's own Event and timeout, not anyio's, on this per-call path (Bastion runs on asyncio
    # only): anyio's Event looks up the running backend when made, and `fail_after` builds a cancel
    # scope; the pair cost 15-16 µs of CPU per call against 7-8 for these (uvloop, measured alone).
    done: asyncio.Event = field(default_factory=asyncio.Event)
    message: dict[str, Any] | None = None


class RpcCore:
    """Correlates requests and replies and runs the handshake; subclasses provide the wire.

    A subclass implements `_send_request` (deliver one request; it may route the
    reply itself by calling `_route`), `_send_message` (fire-and-forget
    notification or reply) and `_connect` / `_disconnect`.
    """

    def __init__(self, spec: OriginSpec, *, timeout: float, max_bytes: int, notify: NotificationSink) -> None:
        self.spec = spec
        self.timeout = spec.timeout_seconds or timeout
        self.max_bytes = max_bytes
        self.protocol_version: str | None = None
        self.modern = False  # 2026-07-28 per-request envelope instead of a session
        # Its tools' `Mcp-Param-*` headers by tool name (HTTP origins send them; the pool keeps them).
        self.param_headers: Mapping[str, ParamHeaders] = {}
        self.capabilities: dict[str, Any] = {}
        self._notify = notify
        self._closed = False  # `aclose` was called: never connects again
        self._next_id = 0
        self._pending: dict[int, _Pending] = {}
        self._sinks: dict[int, ProgressSink] = {}
        self._stalled: set[ProgressSink] = set()  # callers whose stream stopped taking messages
        self._on_behalf: dict[int, OnBehalf] = {}  # request id → the user a call is made for
        self._once: set[int] = set()  # request ids that may change something: never sent twice
        self._ready = False
        self._connect_lock = anyio.Lock()
        self._close_reason = "closed the connection"

    # --- the public side -------------------------------------------------------
    async def connect(self) -> dict[str, Any]:
        await self._ensure_ready()
        return self.capabilities

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        progress: ProgressSink | None = None,
        capabilities: dict[str, Any] | None = None,
        on_behalf: OnBehalf | None = None,
        repeatable: bool = True,
    ) -> dict[str, Any]:
        await self._ensure_ready()
        return await self._call(method, params, progress, capabilities, on_behalf, repeatable)

    async def aclose(self) -> None:
        """Close for good: a caller still holding this client (the pool replaced or dropped it) gets
        a clear error on its next call instead of a new connection nobody would ever close."""
        self._ready, self._closed = False, True
        self._fail_all("was closed by Bastion")
        await self._disconnect()

    # --- the subclass side -----------------------------------------------------
    async def _connect(self) -> None:
        raise NotImplementedError

    async def _disconnect(self) -> None:
        raise NotImplementedError

    async def _abandon(self, *, failed: bool) -> None:
        """A connection whose handshake did not complete: disconnect. `failed`: the origin failed it
        (not a caller that gave up), which a subclass may count against the origin."""
        await self._disconnect()

    async def _send_request(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    async def _send_message(self, message: dict[str, Any], *, on_behalf: OnBehalf | None = None) -> None:
        """`on_behalf`: the person a notification or reply concerns (their call's cancellation, an
        answer on their call's reply stream); None for the gateway's own."""
        raise NotImplementedError

    async def _subscribe(self) -> None:
        """Open the origin's `subscriptions/listen` channel (2026-07-28) for list_changed."""
        raise NotImplementedError

    # --- shared machinery --------------------------------------------------------
    async def _ensure_ready(self) -> None:
        if self._ready:
            return
        async with self._connect_lock:
            if self._ready:
                return
            if self._closed:
                raise UpstreamUnavailable(f"origin {self.spec.name!r}: its connection was closed; retry the call")
            await self._connect()
            try:
                await self._handshake()
            except BaseException as exc:
                # A half-open connection (a started process, an open pool) must not linger:
                # the next call starts from scratch.
                with anyio.CancelScope(shield=True):
                    await self._abandon(failed=not isinstance(exc, anyio.get_cancelled_exc_class()))
                raise
            self._ready = True

    async def _handshake(self) -> None:
        """Speak the newest revision the origin supports: probe `server/discover`, else initialize."""
        if await self._discover_modern():
            await self._subscribe()
            return
        await self._initialize()

    async def _discover_modern(self) -> bool:
        self.modern, self.protocol_version = True, LATEST_MODERN_VERSION
        try:
            with anyio.fail_after(min(self.timeout, _DISCOVER_SECONDS)):
                result = await self._call("server/discover", {}, None)
            discovered = mt.DiscoverResult.model_validate(result)
            versions = [v for v in MODERN_PROTOCOL_VERSIONS if v in discovered.supported_versions]
        except UpstreamRefused:
            raise  # Bastion's own policy, not a sign of an older origin: no fallback would fare better
        except (UpstreamError, TimeoutError, ValidationError) as exc:
            log.info("origin_has_no_server_discover", origin=self.spec.name, error=type(exc).__name__)
            versions = []
        if not versions:
            self.modern, self.protocol_version = False, None
            await self._reset_after_probe()
            return False
        self.protocol_version = versions[-1]
        self.capabilities = discovered.capabilities.model_dump(by_alias=True, exclude_none=True)
        return True

    async def _reset_after_probe(self) -> None:
        """Hook: undo what a failed probe left behind before the handshake (default: nothing)."""

    async def _initialize(self) -> None:
        """The initialize handshake (MCP lifecycle), offering the newest handshake revision."""
        params = {"protocolVersion": LATEST_HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
        result = await self._call("initialize", params, None)
        try:
            init = mt.InitializeResult.model_validate(result)
        except ValidationError as exc:
            raise UpstreamProtocolError(f"origin {self.spec.name!r} sent a malformed initialize result") from exc
        self.protocol_version = init.protocol_version
        self.capabilities = init.capabilities.model_dump(by_alias=True, exclude_none=True)
        await self._send_message({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def _call(
        self,
        method: str,
        params: dict[str, Any] | None,
        progress: ProgressSink | None,
        capabilities: dict[str, Any] | None = None,
        on_behalf: OnBehalf | None = None,
        repeatable: bool = True,
    ) -> dict[str, Any]:
        self._next_id += 1
        request_id = self._next_id
        if on_behalf is not None:
            self._on_behalf[request_id] = on_behalf  # for origins that take a per-user credential
        if not repeatable:
            self._once.add(request_id)  # the transport never sends it twice
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if self.modern:
            params = dict(params or {})
            params["_meta"] = {**(params.get("_meta") or {}), **self._envelope(capabilities)}
        if progress is not None:
            # The origin sees our token, never the client's: many clients share this connection.
            params = dict(params or {})
            params["_meta"] = {**(params.get("_meta") or {}), "progressToken": request_id}
            self._sinks[request_id] = progress
        if params is not None:
            body["params"] = params
        pending = self._pending[request_id] = _Pending()
        try:
            async with asyncio.timeout(self.timeout):
                await self._send_request(body)
                if not pending.done.is_set():  # an HTTP origin's reply is routed within the request
                    await pending.done.wait()
        except TimeoutError:
            await self._cancel_upstream(request_id, "timed out at the gateway")
            raise UpstreamTimeout(
                f"origin {self.spec.name!r} did not answer {method} within {self.timeout:g}s"
            ) from None
        except anyio.get_cancelled_exc_class():
            await self._cancel_upstream(request_id, "cancelled by the client")
            raise
        finally:
            self._pending.pop(request_id, None)
            sink = self._sinks.pop(request_id, None)
            if sink is not None:
                self._stalled.discard(sink)
            self._on_behalf.pop(request_id, None)
            self._once.discard(request_id)
        return self._outcome(method, pending.message)

    def _envelope(self, capabilities: dict[str, Any] | None = None) -> dict[str, Any]:
        """The 2026-07-28 per-request fields every request carries in `_meta`."""
        return {
            mt.PROTOCOL_VERSION_META_KEY: self.protocol_version,
            mt.CLIENT_CAPABILITIES_META_KEY: capabilities or {},
            mt.CLIENT_INFO_META_KEY: CLIENT_INFO,
        }

    def listen_request(self) -> dict[str, Any]:
        params = {"notifications": LIST_CHANGED_FILTER, "_meta": self._envelope()}
        return {"jsonrpc": "2.0", "id": "bastion-listen", "method": "subscriptions/listen", "params": params}

    def _outcome(self, method: str, message: dict[str, Any] | None) -> dict[str, Any]:
        if message is None:
            raise UpstreamUnavailable(f"origin {self.spec.name!r} {self._close_reason} during {method}")
        if "error" in message:
            error = message["error"]
            if not isinstance(error, dict) or not isinstance(error.get("code"), int):
                raise UpstreamProtocolError(f"origin {self.spec.name!r} sent a malformed error for {method}")
            raise UpstreamRejected(int(error["code"]), str(error.get("message", "")), data=error.get("data"))
        result = message.get("result")
        if not isinstance(result, dict):
            raise UpstreamProtocolError(f"origin {self.spec.name!r} sent a reply without a result object")
        return result

    async def _cancel_upstream(self, request_id: int, reason: str) -> None:
        # MCP cancellation: tell the origin to stop work nobody will read.
        with anyio.move_on_after(_CANCEL_NOTICE_SECONDS, shield=True):
            try:
                await self._send_message(
                    {
                        "jsonrpc": "2.0",
                        "method": "notifications/cancelled",
                        "params": {"requestId": request_id, "reason": reason},
                    },
                    on_behalf=self._on_behalf.get(request_id),
                )
            except (UpstreamUnavailable, UpstreamProtocolError, OSError) as exc:
                log.info("cancel_notice_failed", origin=self.spec.name, error=str(exc))

    async def _route(self, message: Any, *, reply_to: int | None = None) -> None:
        """Dispatch one message the origin sent (`reply_to`: the request whose reply stream carried it)."""
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            raise UpstreamProtocolError(f"origin {self.spec.name!r} sent a message that is not JSON-RPC 2.0")
        method = message.get("method")
        if method is None:
            request_id = message.get("id")
            pending = self._pending.get(request_id) if isinstance(request_id, int) else None
            if pending is not None and not pending.done.is_set():
                pending.message = message
                pending.done.set()
            return
        if not isinstance(method, str):
            # Dropped, not raised: on a shared notification stream one malformed message must not end
            # the stream (nor the task that reads it) for every caller of this origin.
            log.warning("origin_message_dropped", origin=self.spec.name, reason="its method is not a string")
            return
        if "id" in message:
            if not is_request_id(message["id"]):  # JSON-RPC: a string or a number; nothing to answer to
                log.warning("origin_message_dropped", origin=self.spec.name, reason="its id is not a string or number")
                return
            await self._answer_server_request(message, self._on_behalf.get(reply_to) if reply_to is not None else None)
            return
        raw_params = message.get("params")
        params: dict[str, Any] = raw_params if isinstance(raw_params, dict) else {}
        if method == "notifications/progress":
            token = params.get("progressToken")
            # On a call's own reply stream, progress is for that call only: an origin (or text it
            # echoes) must not aim it at another caller's request by its token.
            if reply_to is not None and token != reply_to:
                token = None
            sink = self._sinks.get(token) if isinstance(token, int) else None
            if sink is not None:
                await self._deliver(sink, method, params)
        elif method.endswith("/list_changed"):
            await self._notify(self.spec.id, method, params)
        elif reply_to is not None and (sink := self._sinks.get(reply_to)) is not None:
            await self._deliver(sink, method, params)
        else:
            # Origin-wide messages (logging without a request) are not relayed to callers:
            # one origin connection is shared by many principals.
            log.debug("origin_notification_dropped", origin=self.spec.name, method=method)

    async def _deliver(self, sink: ProgressSink, method: str, params: dict[str, Any]) -> None:
        # A sink writes to one caller's stream; that caller going away, or not reading, must not
        # stop the reader that serves every other caller of this origin (a client that stops
        # reading fills its socket, and the write waits for it): a delivery gets a moment, and a
        # caller that took longer gets no more of them.
        if sink in self._stalled:
            return
        try:
            with anyio.move_on_after(_DELIVER_SECONDS) as waited:
                await sink(method, params)
        except Exception as exc:  # isolates one caller's failure from the shared connection
            log.info("notification_not_delivered", origin=self.spec.name, method=method, error=type(exc).__name__)
            return
        if waited.cancelled_caught:
            self._stalled.add(sink)
            log.info("notification_not_delivered", origin=self.spec.name, method=method, error="not reading")

    async def _answer_server_request(self, message: dict[str, Any], on_behalf: OnBehalf | None = None) -> None:
        if message["method"] == "ping":
            reply: dict[str, Any] = {"jsonrpc": "2.0", "id": message["id"], "result": {}}
        else:
            reply = {
                "jsonrpc": "2.0",
                "id": message["id"],
                "error": {"code": mt.METHOD_NOT_FOUND, "message": f"Bastion does not relay {message['method']}"},
            }
        await self._send_message(reply, on_behalf=on_behalf)

    def _fail_all(self, reason: str) -> None:
        """Wake every waiter with no reply: each raises UpstreamUnavailable naming `reason`."""
        self._close_reason = reason
        for pending in self._pending.values():
            pending.done.set()
        self._ready = False


def decode_message(data: str | bytes, origin: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamProtocolError(f"origin {origin!r} sent a reply that is not valid JSON") from exc

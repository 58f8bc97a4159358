"""Streamable HTTP endpoint of every virtual server: `/servers/{slug}/mcp`.

Order for each request (each step can refuse, and nothing after it runs):
Origin check → snapshot confirmed current (with Redis: against the shared
epoch; 503 when that cannot be confirmed) → bearer token → published server
→ token may reach the server
→ method (POST/GET/DELETE) → body limit and JSON decoding → protocol era:
2026-07-28 requests carry their version in a header and `_meta` and have no
session; handshake-era requests after `initialize` need their session, which
must belong to the same token.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import mcp_types as mt
import orjson
import structlog
from mcp.shared.inbound import ERROR_CODE_HTTP_STATUS, unsupported_protocol_version_rejection
from mcp_types.version import (
    HANDSHAKE_PROTOCOL_VERSIONS,
    LATEST_HANDSHAKE_VERSION,
    LATEST_MODERN_VERSION,
    MODERN_PROTOCOL_VERSIONS,
)
from pydantic import ValidationError

from bastion.audit.chain import AuditRecord
from bastion.audit.sink import AuditSink
from bastion.catalog.holder import SnapshotHolder
from bastion.catalog.snapshot import ServerView, Snapshot
from bastion.catalog.views import view_for
from bastion.errors import (
    BadRequest,
    BastionError,
    Forbidden,
    InvalidParams,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RequestCancelled,
    SessionRequired,
    Unauthenticated,
    UnknownSession,
    UnsupportedProtocolVersion,
)
from bastion.governance.access import Member
from bastion.http.asgi import (
    ON_DISCONNECT,
    BodyTooLarge,
    Receive,
    Scope,
    Send,
    TrackedSend,
    header,
    read_body,
    send_bytes,
)
from bastion.http.refusal_budget import RefusalBudget
from bastion.identity.bearer import BearerResolver
from bastion.identity.principal import Principal
from bastion.identity.token_rules import TokenGate, TokenRefused, UseRecorder
from bastion.mcp.auditing import FORWARDED, exchange_record, refusal_record
from bastion.mcp.challenge import bearer_challenge, dispatch_status, refuse
from bastion.mcp.envelope import is_modern, modern_rejection, param_headers_of, parse_request
from bastion.mcp.jsonrpc import decode_body, error_message, is_request_id, result_message
from bastion.mcp.methods import SERVER_CAPABILITIES, Call, Methods
from bastion.mcp.origin_check import OriginPolicy
from bastion.mcp.scopes import check_scope
from bastion.mcp.session_limits import SessionLimits
from bastion.mcp.sessions import LISTEN_FILTER_KEYS, SUBSCRIPTION_ID_META_KEY, Session, SessionStore
from bastion.mcp.streaming import event_stream_only, send_event, serve_event_stream, serve_streaming
from bastion.observability.metrics import Metrics

__all__ = ["McpEndpoint"]

log = structlog.get_logger(__name__)

_SESSION_HEADER = b"mcp-session-id"


def _admitted(snapshot: Snapshot, slug: str, principal: Principal) -> tuple[ServerView, Member]:
    """The server `slug` and the member `principal` acts as, if this token may reach it at all."""
    server = snapshot.servers.get(slug)
    member = snapshot.members.get(principal.user_id)
    if server is None or not server.published or member is None or not member.sees(server.placement):
        # Another tenant's server, or one not shared with this user, is answered like a missing one.
        raise NotFound(f"no published virtual server {slug!r}")
    if principal.client_id is not None and server.id not in principal.server_ids:
        # RFC 8707 / MCP authorization: an OAuth token issued for another resource is
        # not valid here at all (401 invalid_token), so the client re-authorizes for this one.
        raise Unauthenticated("this token was issued for another resource: authorize for this server")
    if not principal.may_reach(server.id):
        raise Forbidden(f"this token may not reach virtual server {slug!r}")
    return server, member


class McpEndpoint:
    def __init__(
        self,
        *,
        holder: SnapshotHolder,
        sessions: SessionStore,
        methods: Methods,
        origins: OriginPolicy,
        bearer: BearerResolver,
        base_url: str,
        max_body_bytes: int,
        max_json_depth: int,
        gate: TokenGate | None = None,
        limits: SessionLimits | None = None,
        refusals: RefusalBudget | None = None,
        audit: AuditSink | None = None,
        fallback_tenant: str = "",
        metrics: Metrics | None = None,
    ) -> None:
        self._bearer = bearer
        self._gate = gate  # API tokens' own rules and their use log (None: neither)
        self._limits = limits  # sessions a person opens, streams a token holds (None: unbounded)
        self._refusals = refusals  # refusals of unidentified requests recorded per address (None: all)
        self._base_url = base_url
        self._holder = holder
        self._sessions = sessions
        self._methods = methods
        self._origins = origins
        self._max_body = max_body_bytes
        self._max_depth = max_json_depth
        self._audit = audit  # refusals before dispatch (dispatch records the rest)
        self._fallback_tenant = fallback_tenant  # for a refusal nobody could be identified for
        self._metrics = metrics or Metrics()

    async def __call__(self, slug: str, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        recorder: UseRecorder | None = None
        snapshot: Snapshot | None = None
        principal: Principal | None = None
        try:
            self._origins.check(header(scope, b"origin"))
            # Every decision below, refusals included, is made on a snapshot at least as new as
            # the newest change committed anywhere: a token revoked on another replica is refused here.
            snapshot = await self._holder.checked()
            principal = await self._bearer.authenticate(
                snapshot.tokens, snapshot.epoch, header(scope, b"authorization")
            )
            authenticated = time.perf_counter()
            self._metrics.stage("authenticate", authenticated - started)
            gate = self._gate
            if gate is not None and principal.client_id is None and principal.rules is not None:
                # An API token (OAuth tokens have no rules and are not logged here): its use is
                # recorded, allowed or refused, when the response starts (status and latency).
                recorder = gate.recorder(send, started)
                send = recorder
                gate.admit(principal, scope, recorder)
            server, member = _admitted(snapshot, slug, principal)
            # From here on the server is what this member may use through this token (roles, teams).
            server = view_for(snapshot, member, principal.limit, server)
            if gate is not None and recorder is not None:
                await gate.count(principal, recorder)  # the quota, once the use is otherwise allowed
            self._metrics.stage("authorize", time.perf_counter() - authenticated)
            method = scope["method"]
            version = header(scope, b"mcp-protocol-version") if method != "POST" else None
            if version is not None and is_modern(version):
                if version not in MODERN_PROTOCOL_VERSIONS:  # not one spoken here at all: 400, not 405
                    supported = ", ".join((*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS))
                    raise UnsupportedProtocolVersion(f"MCP-Protocol-Version {version} is not supported ({supported})")
                # 2026-07-28 has no session stream and nothing to delete: POST only.
                raise MethodNotAllowed("the 2026-07-28 revision takes POST only", allow="POST")
            if method == "POST":
                await self._post(scope, receive, send, snapshot, server, principal)
            elif method == "GET":
                await self._get(scope, receive, send, snapshot, server, principal, started)
            elif method == "DELETE":
                # 400/404 when it is not theirs; ended on every replica (see sessions.py).
                await self._sessions.terminate(self._session(scope, server, principal))
                self._exchanged(server, principal, "session end (HTTP DELETE)", started)
                await send_bytes(send, 204, b"")
            else:
                raise MethodNotAllowed(f"HTTP {method} is not served here", allow="GET, POST, DELETE")
        except BastionError as error:
            unidentified = principal is None and isinstance(error, (Unauthenticated, Forbidden))
            if unidentified and self._refusals is not None and not await self._refusals.recorded(scope):
                self._metrics.refused("mcp", error)  # nobody identified, past the budget: counted only
            else:
                self._refused(slug, scope, snapshot, principal, error, started)
            # A token's own rule is no matter of scope: no OAuth challenge that would start a step-up.
            challenge = (
                None if isinstance(error, TokenRefused) else bearer_challenge(self._base_url, slug, scope, error)
            )
            await refuse(send, error, challenge)
        finally:
            if recorder is not None:
                recorder.close()  # records the use if no response started (500)

    # --- POST: one JSON-RPC message ------------------------------------------------------
    async def _post(
        self, scope: Scope, receive: Receive, send: Send, snapshot: Snapshot, server: ServerView, principal: Principal
    ) -> None:
        started = time.perf_counter()
        try:
            body = await read_body(scope, receive, self._max_body)
        except BodyTooLarge:
            raise PayloadTooLarge(f"the request body exceeds {self._max_body} bytes") from None
        message = decode_body(body, max_depth=self._max_depth)
        if isinstance(message, list):
            raise BadRequest("JSON-RPC batches are not accepted: send one message per request")
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            raise BadRequest("the body must be one JSON-RPC 2.0 message")
        try:
            await self._post_message(scope, receive, send, snapshot, server, principal, message, started)
        except BastionError as error:
            # A refusal of a request answers that request (a client's reply or a notification has no id to echo).
            if "method" in message and is_request_id(message.get("id")):
                error.request_id = message["id"]
            raise

    async def _post_message(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        snapshot: Snapshot,
        server: ServerView,
        principal: Principal,
        message: dict[str, Any],
        started: float,
    ) -> None:
        check_scope(principal, server, message)
        version = header(scope, b"mcp-protocol-version")
        if is_modern(version):
            meta = (message.get("params") or {}).get("_meta") if isinstance(message.get("params"), dict) else None
            capabilities = meta.get(mt.CLIENT_CAPABILITIES_META_KEY) if isinstance(meta, dict) else None
            call = Call(
                server,
                snapshot,
                principal,
                modern=True,
                client_capabilities=capabilities if isinstance(capabilities, dict) else None,
                param_headers=param_headers_of(scope),
            )
            await self._post_modern(scope, receive, send, message, call, started)
            return
        if message.get("method") == "initialize":
            await self._initialize(scope, send, message, server, principal)
            self._exchanged(server, principal, "initialize", started)
            return
        session = self._session(scope, server, principal)
        if "method" not in message:  # the client's reply to a request Bastion sent it
            session.answer(message)
            self._exchanged(server, principal, "reply to Bastion's request", started)
            await send_bytes(send, 202, b"")
            return
        if version is not None and version != session.protocol_version:
            raise UnsupportedProtocolVersion(
                f"MCP-Protocol-Version {version} differs from the session's {session.protocol_version}"
            )
        if "id" not in message:
            self._notification(session, message)
            self._exchanged(server, principal, str(message["method"]), started)
            await send_bytes(send, 202, b"")
            return
        request = parse_request(message)
        if request.id in session.in_flight:
            # JSON-RPC ids are unique per session while in use: a second one took the first's place
            # (its cancellation, its end) and left the first unreachable.
            raise BadRequest(f"request id {request.id!r} is already in use in this session: give each request its own")
        call = Call(server, snapshot, principal, modern=False, session_id=session.id)
        tracked = TrackedSend(send)
        with anyio.CancelScope() as cancel:
            session.in_flight[request.id] = cancel
            try:
                await self._answer(scope, receive, tracked, call, request, session)
            finally:
                session.in_flight.pop(request.id, None)
                session.last_seen = time.monotonic()  # idle from the end of its last call
        if cancel.cancelled_caught:
            # The client cancelled (or the session ended): it reads no answer, but the HTTP exchange
            # must end, whether or not its event stream had begun.
            await tracked.finish(200, error_message(request.id, RequestCancelled("Request cancelled")))

    async def _post_modern(
        self, scope: Scope, receive: Receive, send: Send, message: dict[str, Any], call: Call, started: float
    ) -> None:
        if "method" not in message:  # a 2026-07-28 client answers input requests in its next request
            raise BadRequest("a 2026-07-28 client posts no responses: answer input requests in the retried request")
        if "id" not in message:
            # Acknowledged and dropped (2026-07-28 defines no client notifications here), as the SDK does,
            # once the version is one served here: an unknown one is told so, as for a request.
            rejection = unsupported_protocol_version_rejection(header(scope, b"mcp-protocol-version") or "")
            if rejection is not None:
                raise UnsupportedProtocolVersion(
                    f"{rejection.message}: this server speaks {LATEST_MODERN_VERSION}", data=rejection.data
                )
            self._exchanged(call.server, call.principal, str(message["method"]), started)
            await send_bytes(send, 202, b"")
            return
        request = parse_request(message)
        rejection = modern_rejection(scope, message)
        if rejection is not None:
            self._metrics.refused("mcp", BadRequest(rejection.message))
            refusal = refusal_record(
                call.principal, call.server.slug, request.method, rejection.message, rejection.code, denied=False
            )
            self._write(call.server.placement.tenant_id, refusal)
            error = {"code": rejection.code, "message": rejection.message, "data": rejection.data}
            body = orjson.dumps({"jsonrpc": "2.0", "id": request.id, "error": error})
            await send_bytes(send, ERROR_CODE_HTTP_STATUS.get(rejection.code, 400), body)
        elif request.method == "subscriptions/listen":
            await self._listen(scope, receive, send, request, call, started)
        elif request.method in FORWARDED:
            await self._answer_while_connected(scope, receive, send, call, request)
        else:
            await self._answer(scope, receive, send, call, request, None)

    async def _answer_while_connected(
        self, scope: Scope, receive: Receive, send: Send, call: Call, request: mt.JSONRPCRequest
    ) -> None:
        """2026-07-28: a client that closes its connection has cancelled its request (the spec's MUST
        for Streamable HTTP; it sends no notifications/cancelled), so the call stops, at the origin
        too. The HTTP server says so (`ON_DISCONNECT`); under another server, nothing tells."""
        state = scope.get("state")
        if not isinstance(state, dict):
            await self._answer(scope, receive, send, call, request, None)
            return
        tracked = TrackedSend(send)
        with anyio.CancelScope() as gone:
            state[ON_DISCONNECT] = gone.cancel
            try:
                await self._answer(scope, receive, tracked, call, request, None)
            finally:
                state.pop(ON_DISCONNECT, None)
        if gone.cancelled_caught:  # nobody reads it: the exchange still ends, as for any cancel
            await tracked.finish(200, error_message(request.id, RequestCancelled("the client closed the connection")))

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        call: Call,
        request: mt.JSONRPCRequest,
        session: Session | None,
    ) -> None:
        params = request.params or {}
        token = (params.get("_meta") or {}).get("progressToken")
        can_ask = session is not None and session.can_elicit
        accept = header(scope, b"accept") or ""
        if (token is not None or can_ask or event_stream_only(accept)) and "text/event-stream" in accept:
            await serve_streaming(
                self._methods,
                call,
                request,
                receive,
                send,
                client_token=token,
                session=session,
                session_headers=_session_headers(session),
            )
            return
        try:
            result = await self._methods.dispatch(call, request.method, params)
        except BastionError as error:
            status, extra = dispatch_status(error, modern=call.modern)
            headers = [*_session_headers(session), *extra]
            await send_bytes(send, status, error_message(request.id, error), headers=headers)
            return
        await send_bytes(send, 200, result_message(request.id, result), headers=_session_headers(session))

    async def _initialize(
        self, scope: Scope, send: Send, message: dict[str, Any], server: ServerView, principal: Principal
    ) -> None:
        request = parse_request(message)
        try:
            params = mt.InitializeRequestParams.model_validate(request.params or {})
        except ValidationError as exc:
            raise InvalidParams(f"invalid initialize params: {exc.errors()[0]['msg']}") from None
        # MCP lifecycle: answer with the client's version when we speak it, else our newest.
        version = (
            params.protocol_version
            if params.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS
            else LATEST_HANDSHAKE_VERSION
        )
        if self._limits is not None:
            await self._limits.opening(principal)
        session = self._sessions.create(
            server_id=server.id,
            token_id=principal.session_owner,
            protocol_version=version,
            capabilities=params.capabilities.model_dump(by_alias=True, exclude_none=True),
            limit=principal.limit,
        )
        result: dict[str, Any] = {
            "protocolVersion": version,
            "capabilities": SERVER_CAPABILITIES,
            "serverInfo": Methods.server_info(server),
        }
        if server.description:
            result["instructions"] = server.description
        reply, headers = result_message(request.id, result), _session_headers(session)
        if event_stream_only(header(scope, b"accept")):
            await send_event(send, reply, headers)
        else:
            await send_bytes(send, 200, reply, headers=headers)

    def _notification(self, session: Session, message: dict[str, Any]) -> None:
        if message["method"] == "notifications/cancelled":
            params = message.get("params")
            request_id = params.get("requestId") if isinstance(params, dict) else None
            scope = session.in_flight.get(request_id) if is_request_id(request_id) else None
            if scope is not None:  # a malformed notice names no request: nothing is cancelled
                scope.cancel()

    async def _listen(
        self, scope: Scope, receive: Receive, send: Send, request: mt.JSONRPCRequest, call: Call, started: float
    ) -> None:
        """2026-07-28 `subscriptions/listen`: a notification stream for as long as the client keeps it."""
        try:
            params = mt.SubscriptionsListenRequestParams.model_validate(request.params or {})
        except ValidationError as exc:
            raise InvalidParams(f"invalid subscriptions/listen params: {exc.errors()[0]['msg']}") from None
        requested = params.notifications.model_dump(by_alias=True, exclude_none=True)
        honoured = {key: True for key in LISTEN_FILTER_KEYS if requested.get(key) is True}
        if self._limits is not None:  # the streams first: a refused stream spends no opening
            self._limits.streaming(self._sessions, call.principal.session_owner)
            await self._limits.opening(call.principal)
            # Again, with no wait from here to the stream's registration: other listens of this token
            # may have opened theirs while the opening was counted (a round trip to Redis).
            self._limits.streaming(self._sessions, call.principal.session_owner)
        session = self._sessions.create(
            server_id=call.server.id,
            token_id=call.principal.session_owner,
            protocol_version=LATEST_MODERN_VERSION,
            capabilities={},
            subscription=(request.id, honoured),
            limit=call.principal.limit,
        )
        ack = {
            "jsonrpc": "2.0",
            "method": "notifications/subscriptions/acknowledged",
            "params": {"notifications": honoured, "_meta": {SUBSCRIPTION_ID_META_KEY: request.id}},
        }

        async def confirm() -> None:
            await self._reconfirm(scope, call.snapshot, call.server)
            self._exchanged(call.server, call.principal, request.method, started)

        try:
            await serve_event_stream(
                session, receive, send, call.principal, confirm, first=orjson.dumps(ack), announce_session=False
            )
        finally:
            self._sessions.close(session.id)

    # --- GET: the server-to-client stream ---------------------------------------------------
    async def _get(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        snapshot: Snapshot,
        server: ServerView,
        principal: Principal,
        started: float,
    ) -> None:
        if "text/event-stream" not in (header(scope, b"accept") or ""):
            await send_bytes(send, 406, b"", headers=[])
            return
        session = self._session(scope, server, principal)
        if self._limits is not None:
            self._limits.streaming(self._sessions, session.token_id, replacing=session)

        async def confirm() -> None:
            await self._reconfirm(scope, snapshot, server)
            self._exchanged(server, principal, "event stream (HTTP GET)", started)

        await serve_event_stream(session, receive, send, principal, confirm)

    async def _reconfirm(self, scope: Scope, checked: Snapshot, server: ServerView) -> None:
        """A stream outlives the check that let it in: a change committed since (a revocation, an
        unpublish, a team left, a token narrowed, announced before the stream was registered to
        hear of it) is checked again, as the request was."""
        current = self._holder.current
        if current.epoch == checked.epoch:
            return
        principal = await self._bearer.authenticate(current.tokens, current.epoch, header(scope, b"authorization"))
        if self._gate is not None:
            self._gate.still_admits(principal, scope)  # its networks narrowed meanwhile, say
        now, _ = _admitted(current, server.slug, principal)
        if now.id != server.id:  # not another server under its slug
            raise NotFound(f"no published virtual server {server.slug!r}")

    def _exchanged(self, server: ServerView, principal: Principal, method: str, started: float) -> None:
        """The record of a request the endpoint answered itself (see `exchange_record`)."""
        self._write(server.placement.tenant_id, exchange_record(principal, server.slug, method, started))

    def _refused(
        self,
        slug: str,
        scope: Scope,
        snapshot: Snapshot | None,
        principal: Principal | None,
        error: BastionError,
        started: float,
    ) -> None:
        """Count and record a request refused before dispatch, in the tenant of whoever was
        identified: the caller, else the server's owner, else the fallback tenant."""
        self._metrics.refused("mcp", error)
        tenant = self._fallback_tenant
        if snapshot is not None:
            member = snapshot.members.get(principal.user_id) if principal is not None else None
            server = snapshot.servers.get(slug)
            if member is not None:
                tenant = member.tenant_id
            elif server is not None:
                tenant = server.placement.tenant_id
        method = f"HTTP {scope['method']}"  # the body, and so the JSON-RPC method, may not have been read
        record = refusal_record(
            principal, slug, method, error.message, error.jsonrpc_code, denied=error.is_denial, started=started
        )
        self._write(tenant, record)

    def _write(self, tenant_id: str, record: AuditRecord) -> None:
        if self._audit is not None:
            self._audit.record(tenant_id, record)  # nothing reached an origin: nobody waits for it

    def _session(self, scope: Scope, server: ServerView, principal: Principal) -> Session:
        session_id = header(scope, _SESSION_HEADER)
        if session_id is None:
            raise SessionRequired("missing Mcp-Session-Id header: send initialize first")
        session = self._sessions.get(session_id, server_id=server.id, token_id=principal.session_owner)
        if session is None:
            # Unknown, expired, or opened by another token: the same answer for all three.
            raise UnknownSession("unknown or expired MCP session: initialize a new one")
        session.limit = principal.limit  # as of this request (a session reopened here had none)
        return session


def _session_headers(session: Session | None) -> list[tuple[bytes, bytes]]:
    return [] if session is None else [(_SESSION_HEADER, session.id.encode())]

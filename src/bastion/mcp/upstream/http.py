"""Streamable HTTP origins: one keep-alive connection pool per origin, shared by all calls.

Requests (every forwarded call) go through `bastion.net.http1`, a lean HTTP/1.1 client that
only writes one request and parses its reply: aiohttp cost three to four times its CPU per
request, httpx ten times (see the module and the README's performance section). aiohttp stays
for the rest, which is rare and needs more of HTTP: the origin's notification stream, messages
that answer the origin's own requests, and ending the session.

Every connection obeys the egress policy (`bastion.net.egress`): the origin's host is
checked on the address actually connected to, so an origin that resolves to, or is,
a private, loopback or metadata address is refused unless allowlisted. Redirects are
never followed: an origin that answers with one is refused, wherever it points.
"""

from __future__ import annotations

import re
from typing import Any

import aiohttp
import anyio
import mcp_types as mt
import orjson
import structlog
from anyio.abc import TaskGroup
from mcp.shared.inbound import NAME_BEARING_METHODS, encode_header_value
from pydantic import ValidationError

from bastion.catalog import param_headers
from bastion.catalog.snapshot import OriginSpec
from bastion.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamRefused,
    UpstreamTimeout,
    UpstreamTooLarge,
    UpstreamUnauthorized,
    UpstreamUnavailable,
)
from bastion.mcp.upstream.base import NotificationSink, OnBehalf, OriginGuard, ProgressSink
from bastion.mcp.upstream.person_sessions import Person, PersonSessions, person_of
from bastion.mcp.upstream.rpc import CLIENT_INFO, RpcCore, decode_message
from bastion.mcp.upstream.sse import iter_sse_data
from bastion.net.egress import EgressRefused, egress_session
from bastion.net.http1 import (
    Http1Error,
    Http1InvalidRequest,
    Http1Pool,
    Http1Response,
    Http1TooLarge,
    Http1Unreachable,
)
from bastion.oauth.origin_tokens import SERVICE_SUBJECT
from bastion.observability.tracing import outbound_headers

__all__ = ["HttpOriginClient"]

log = structlog.get_logger(__name__)

_ACCEPT = "application/json, text/event-stream"
_NO_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_read=None)
_SESSION_ID = re.compile(r"[\x21-\x7e]{1,256}")  # what an origin's Mcp-Session-Id may be
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class _SessionLost(Exception):
    """The origin forgot our MCP session (HTTP 404): handshake again and retry once."""

    def __init__(self, session_id: str | None, person: Person | None) -> None:
        super().__init__("session lost")
        self.session_id = session_id  # the one the refused request carried
        self.person = person  # whose session it was (None: the gateway's own)


class HttpOriginClient(RpcCore):
    def __init__(
        self,
        spec: OriginSpec,
        *,
        timeout: float,
        max_bytes: int,
        notify: NotificationSink,
        task_group: TaskGroup,
        guard: OriginGuard,
    ) -> None:
        super().__init__(spec, timeout=timeout, max_bytes=max_bytes, notify=notify)
        assert spec.url is not None
        self._url = spec.url
        self._egress = guard.egress
        self._tasks = task_group
        self._session_id: str | None = None
        # The origin lost our session: handshake again in the era it speaks, on the connections in
        # use (a full reconnect closed them, and every other caller's call with them).
        self._relogin = False
        self._stream: anyio.CancelScope | None = None
        self._http: aiohttp.ClientSession | None = None
        self._wire: Http1Pool | None = None  # requests; `_http` carries streams and the rest
        credential = spec.credential
        self._credential: dict[str, str] = dict(credential.headers) if credential is not None else {}
        self._credential_error = credential.error if credential is not None else None
        self._jwt = credential if credential is not None and credential.mode == "jwt" else None
        self._minter = guard.tokens
        if self._jwt is not None and self._minter is None:
            self._credential_error = "no token minter is configured for JWT origins"
        # Per-user OAuth: each person's request carries their own token (`OnBehalf.bearer`); the
        # gateway's own requests carry the origin's service-client token, or none.
        self._oauth = credential.oauth if credential is not None else None  # modes oauth and exchange
        self._grants = guard.grants
        self._service_bearer: str | None = None
        if self._oauth is not None and self._grants is None:
            self._credential_error = "no grant store is configured for per-user OAuth origins"
        # A handshake-era origin that takes a per-person credential: each person's own session.
        self._people: PersonSessions | None = (
            PersonSessions() if self._jwt is not None or self._oauth is not None else None
        )

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
        if on_behalf is None or not self._ready:  # a request made for no one, or a handshake first
            await self._refresh_service_bearer()
        for attempt in range(2):
            try:  # after a 404 for a lost session, even an unrepeatable call goes again: it was not taken
                if on_behalf is not None and self._people is not None:
                    await self._ensure_ready()
                    if not self.modern:
                        await self._person_session(self._people, on_behalf)
                return await super().request(
                    method,
                    params,
                    progress=progress,
                    capabilities=capabilities,
                    on_behalf=on_behalf,
                    repeatable=repeatable,
                )
            except _SessionLost as lost:  # 404: the origin did not take the request; a new handshake, then once more
                log.info("origin_session_lost", origin=self.spec.name, attempt=attempt + 1, own=lost.person is None)
                if lost.person is not None and self._people is not None:
                    self._people.lost(lost.person, lost.session_id)
                elif lost.session_id == self._session_id:  # not renewed by another caller meanwhile
                    self._ready, self._session_id, self._relogin = False, None, True
        raise UpstreamUnavailable(
            f"origin {self.spec.name!r} did not know the MCP session it had just opened (HTTP 404, twice): "
            "its replicas may not share sessions"
        )

    async def _person_session(self, people: PersonSessions, who: OnBehalf) -> None:
        """Open `who`'s session at the origin, with their credential, unless it is open: the
        handshake in the revision the gateway's own session agreed on."""
        person = person_of(who)
        if people.get(person) is not None:
            return
        async with people.lock(person):
            if people.get(person) is not None:
                return
            people.begin(person)
            offered = self.protocol_version
            params = {"protocolVersion": offered, "capabilities": {}, "clientInfo": CLIENT_INFO}
            result = await self._call("initialize", params, None, on_behalf=who)
            try:
                agreed = mt.InitializeResult.model_validate(result).protocol_version
            except ValidationError as exc:
                raise UpstreamProtocolError(f"origin {self.spec.name!r} sent a malformed initialize result") from exc
            if agreed != offered:
                raise UpstreamProtocolError(
                    f"origin {self.spec.name!r} agreed on {agreed} for a person's session, {offered} for Bastion's own"
                )
            await self._send_message({"jsonrpc": "2.0", "method": "notifications/initialized"}, on_behalf=who)
            people.opened(person)

    async def _refresh_service_bearer(self) -> None:
        if self._oauth is not None and self._grants is not None:
            self._service_bearer = await self._grants.service_bearer(self.spec.id, self._oauth)

    # --- connection lifecycle -----------------------------------------------------------
    async def _connect(self) -> None:
        if self._credential_error is not None:
            # Never call the origin without the credential it was registered with.
            raise UpstreamRefused(
                f"origin {self.spec.name!r} cannot be reached: its credential is unavailable",
                detail=f"origin {self.spec.name!r}: {self._credential_error}",
            )
        await self._refresh_service_bearer()
        self._session_id = None
        if self._people is not None:
            self._people.clear()
        if self._http is None or self._http.closed:
            self._http = egress_session(
                self._egress,
                timeout=aiohttp.ClientTimeout(total=None, connect=min(self.timeout, 10.0)),
                keepalive_timeout=30,
            )
        if self._wire is None:
            self._wire = Http1Pool(self._url, self._egress, connect_timeout=min(self.timeout, 10.0))

    async def _disconnect(self) -> None:
        if self._stream is not None:
            self._stream.cancel()
        wire, self._wire = self._wire, None
        if wire is not None:
            await wire.aclose()
        http, self._http = self._http, None
        if http is None:
            return
        with anyio.CancelScope(shield=True):
            if self._session_id is not None:
                # End the origin's session politely (spec: DELETE with the session id).
                with anyio.move_on_after(2):
                    try:
                        # Like every origin request, it follows no redirect: the credential and the
                        # session id go to the origin alone.
                        async with http.delete(self._url, headers=self._headers(), allow_redirects=False):
                            pass
                    except (aiohttp.ClientError, EgressRefused):
                        pass
            await http.close()

    async def _reset_after_probe(self) -> None:
        # An origin that choked on the probe may have dropped its connections: start clean.
        await self._disconnect()
        await self._connect()

    async def _handshake(self) -> None:
        if self._relogin and not self.modern:
            self._relogin = False
            if self._stream is not None:
                self._stream.cancel()  # the old session's stream: the new one opens its own
                self._stream = None
            await self._initialize()
            return
        self._relogin = False
        await super()._handshake()

    async def _initialize(self) -> None:
        await super()._initialize()
        if self._session_id is not None and self._stream is None:
            self._tasks.start_soon(self._listen, "GET", None)

    async def _subscribe(self) -> None:
        if self._stream is None:
            self._tasks.start_soon(self._listen, "POST", self.listen_request())

    def _headers(self, message: dict[str, Any] | None = None, on_behalf: OnBehalf | None = None) -> dict[str, str]:
        # Built from scratch for each request: nothing of the MCP client's request (its token least
        # of all) reaches the origin; the origin's own service credential, from the vault, does.
        headers = {"accept": _ACCEPT, "content-type": "application/json", **self._credential}
        # Bastion's own requests made for someone are looked up by id; a reply to the origin's
        # request (its id is the origin's, which may equal one of ours) or a notification is made
        # for the person its sender names (`on_behalf`: their call's cancellation), else as the gateway.
        request_id = message.get("id") if message is not None and "method" in message else None
        who = self._on_behalf.get(request_id) if isinstance(request_id, int) else on_behalf
        if self._jwt is not None:
            headers["authorization"] = "Bearer " + self._minted(who)
        elif self._oauth is not None:
            # A person's request carries their token and nothing else (never the service token).
            bearer = self._service_bearer if who is None else who.bearer
            if bearer:
                headers["authorization"] = "Bearer " + bearer
        session = self._session_id
        if who is not None and self._people is not None and not self.modern:
            session = self._people.sent_with(person_of(who))
        if session is not None:
            headers["mcp-session-id"] = session
        headers.update(outbound_headers())  # Bastion's own span (tracing on), never the client's header
        if self.protocol_version is not None:
            headers["mcp-protocol-version"] = self.protocol_version
        if self.modern and message is not None and "method" in message:
            # 2026-07-28: routing headers mirror the body (the origin checks they agree).
            headers["mcp-method"] = message["method"]
            name_key = NAME_BEARING_METHODS.get(message["method"])
            name = (message.get("params") or {}).get(name_key) if name_key else None
            if isinstance(name, str):
                headers["mcp-name"] = encode_header_value(name)
                declared = self.param_headers.get(name) if message["method"] == "tools/call" else None
                arguments = message["params"].get("arguments")
                if declared and isinstance(arguments, dict):  # what the tool's schema asks to see
                    headers.update(param_headers.mirrored(declared, arguments))
        return headers

    def _minted(self, who: OnBehalf | None) -> str:
        """A JWT for the user this request is made for; the gateway's own for requests made for no
        user (handshake, discovery, subscriptions), so those never depend on one person's grant."""
        assert self._jwt is not None and self._minter is not None  # checked in __init__ / _connect
        return self._minter.mint(
            audience=self._jwt.audience or self._url,
            subject=who.user_id if who is not None else SERVICE_SUBJECT,
            tenant_id=who.tenant_id if who is not None else self.spec.tenant_id,
            scopes=who.scopes if who is not None else (),
            lifetime=self._jwt.lifetime,
        )

    # --- the wire ---------------------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise UpstreamUnavailable(f"origin {self.spec.name!r}: the connection is closed")
        return self._http

    def _refused(self, exc: EgressRefused) -> UpstreamRefused:
        # MCP clients learn the kind of address, never the address; administrators see both.
        return UpstreamRefused(
            f"origin {self.spec.name!r} is not reachable under Bastion's egress policy ({exc.reason}); "
            "an administrator can allowlist it",
            detail=f"origin {self.spec.name!r}: {exc.message}",
        )

    async def _send_message(self, message: dict[str, Any], *, on_behalf: OnBehalf | None = None) -> None:
        try:
            # Bounded like a call: the session has no total timeout (its streams live long), and the
            # handshake's `notifications/initialized` is sent holding the lock every caller waits on.
            with anyio.fail_after(self.timeout):
                headers = self._headers(message, on_behalf)
                async with self._client().post(
                    self._url, data=orjson.dumps(message), headers=headers, allow_redirects=False
                ):
                    pass
        except TimeoutError:
            raise UpstreamTimeout(
                f"origin {self.spec.name!r} did not take a {message.get('method', 'reply')} within {self.timeout:g} s"
            ) from None
        except EgressRefused as exc:
            raise self._refused(exc) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamUnavailable(f"origin {self.spec.name!r} is unreachable: {type(exc).__name__}") from exc

    async def _send_request(self, message: dict[str, Any]) -> None:
        wire = self._wire
        if wire is None:
            raise UpstreamUnavailable(f"origin {self.spec.name!r}: the connection is closed")
        try:
            once = message.get("id") in self._once
            body = orjson.dumps(message)
            headers = self._headers(message)
            async with await wire.request("POST", headers, body, replay_stale=not once) as response:
                await self._read_reply(message, response, headers.get("mcp-session-id"))
        except EgressRefused as exc:
            raise self._refused(exc) from exc
        except Http1Unreachable as exc:
            raise UpstreamUnavailable(f"origin {self.spec.name!r} is unreachable: {exc}") from exc
        except Http1Error as exc:
            raise UpstreamProtocolError(f"origin {self.spec.name!r} sent a broken reply: {exc}") from exc
        except Http1InvalidRequest as exc:  # a header value that would split the request (a credential, a token)
            raise UpstreamRefused(
                f"origin {self.spec.name!r} cannot be called: a request header is malformed",
                detail=f"origin {self.spec.name!r}: {exc}",
            ) from exc

    async def _read_reply(self, message: dict[str, Any], response: Http1Response, sent_with: str | None) -> None:
        if response.status in _REDIRECTS:
            # Following it would reach a destination nobody approved (and maybe a refused one).
            raise UpstreamRefused(
                f"origin {self.spec.name!r} answered with a redirect (HTTP {response.status}), which Bastion "
                "does not follow; an administrator must register the final URL",
                detail=f"origin {self.spec.name!r} redirected to {response.headers.get('location', '(nowhere)')!r}, "
                "which Bastion does not follow: register the final URL instead",
            )
        who = self._on_behalf.get(message["id"])
        person = person_of(who) if who is not None and self._people is not None and not self.modern else None
        if message["method"] == "initialize" and "mcp-session-id" in response.headers:
            session_id = response.headers["mcp-session-id"]
            if not _SESSION_ID.fullmatch(session_id):
                # Spec: visible ASCII only. Sent back on every request: nothing else goes in a header.
                raise UpstreamProtocolError(
                    f"origin {self.spec.name!r} sent an MCP session id that is not 1 to 256 visible ASCII characters"
                )
            if person is not None and self._people is not None:
                self._people.started(person, session_id)  # theirs once the handshake ends (`_person_session`)
            else:
                self._session_id = session_id
        if (
            response.status == 404
            and (sent_with is not None or person is not None)
            and message["method"] != "initialize"
        ):
            raise _SessionLost(sent_with, person)
        if response.status == 401:
            if who is not None and who.bearer is not None:  # a person's own token: refreshable
                raise UpstreamUnauthorized(f"origin {self.spec.name!r} did not accept the caller's token (HTTP 401)")
            raise UpstreamRefused(
                f"origin {self.spec.name!r} did not accept Bastion's own credential (HTTP 401)",
                detail=f"origin {self.spec.name!r} answered 401 to {message['method']}: check its credential "
                "(per-user origins: the service client Bastion uses for its own requests)",
            )
        content_type = response.content_type
        if content_type == "text/event-stream" and response.status == 200:
            async for data in iter_sse_data(response.chunks(), max_bytes=self.max_bytes, origin=self.spec.name):
                routed = decode_message(data, self.spec.name)
                await self._route(routed, reply_to=message["id"])
                if (
                    isinstance(routed, dict)
                    and routed.get("id") == message["id"]
                    and routed.keys() & {"result", "error"}
                ):
                    # The reply is in: a stream the origin keeps open after it must not turn a call
                    # that finished into a timeout (its connection is closed, not reused).
                    return
            return
        body = await self._read_bounded(response)
        if content_type == "application/json" and body:
            await self._route(decode_message(body, self.spec.name))  # a JSON-RPC error rides on any status
            pending = self._pending.get(message["id"])
            if pending is not None and not pending.done.is_set():
                # Not this request's reply (an error with a null id, say): waiting for it would turn
                # the origin's answer into a timeout.
                status, method = response.status, message["method"]
                raise UpstreamUnavailable(
                    f"origin {self.spec.name!r} answered HTTP {status} to {method} without its reply"
                )
            return
        raise UpstreamUnavailable(f"origin {self.spec.name!r} answered HTTP {response.status} to {message['method']}")

    async def _read_bounded(self, response: Http1Response) -> bytes:
        try:
            return await response.read(self.max_bytes)
        except Http1TooLarge as exc:
            raise UpstreamTooLarge(
                f"origin {self.spec.name!r} sent more than {self.max_bytes} bytes in one reply"
            ) from exc

    async def _listen(self, method: str, body: dict[str, Any] | None) -> None:
        """The origin's notification stream: GET in a session, `subscriptions/listen` in 2026-07-28."""
        with anyio.CancelScope() as scope:
            self._stream = scope
            try:
                # A GET stream accepts only SSE; a 2026-07-28 POST must accept JSON too.
                headers = {**self._headers(body), "accept": _ACCEPT if body else "text/event-stream"}
                data = orjson.dumps(body) if body is not None else None
                async with self._client().request(
                    method, self._url, headers=headers, data=data, timeout=_NO_TIMEOUT, allow_redirects=False
                ) as response:
                    if response.status != 200:
                        return  # 405: the origin offers no server stream
                    chunks = response.content.iter_any()
                    async for event in iter_sse_data(chunks, max_bytes=self.max_bytes, origin=self.spec.name):
                        await self._route(decode_message(event, self.spec.name))
            except (aiohttp.ClientError, UpstreamError, EgressRefused) as exc:
                log.info("origin_stream_ended", origin=self.spec.name, error=type(exc).__name__)
            except Exception as exc:  # the top of a background task in the gateway's own task group:
                # whatever an origin sends, it ends this stream, never the group (and the gateway's writers).
                log.warning("origin_stream_failed", origin=self.spec.name, error=type(exc).__name__)
            finally:
                if self._stream is scope:  # not a newer stream's, started once this one was cancelled
                    self._stream = None

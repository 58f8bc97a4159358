"""The demo inventory origin over Streamable HTTP, protected by Bastion-minted JWTs.

It trusts no shared secret: it fetches Bastion's JWKS, verifies each request's bearer
JWT (signature, `iss`, `aud` = its own URL, expiry) with joserfc, answers 401 to anything
else, and appends the verified claims (or the refusal) to a JSON-lines log.

`--owned-sessions`: the verified token becomes the request's user as the SDK's own bearer
middleware makes it, so the SDK's session manager binds each MCP session to the principal that
opened it (a session used with another principal's token is "not found", 404), as the spec asks
of servers. `--handshake-only`: `server/discover` is refused as an older server refuses a method
it does not know, so Bastion speaks a handshake revision, with sessions.
Run: python -m tests.origins.jwt_origin --port N --issuer URL --log FILE [--owned-sessions] [--handshake-only]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken

from bastion.demo.inventory import build_server


def protected(
    app: Any, *, issuer: str, audience: str, log: Path, owned_sessions: bool = False, handshake_only: bool = False
) -> Any:
    keys: dict[str, KeySet] = {}

    def key_set(refresh: bool = False) -> KeySet:
        if refresh or "current" not in keys:  # a kid it has not seen: the issuer rotated, fetch again
            keys["current"] = KeySet.import_key_set(httpx.get(f"{issuer}/oauth/jwks.json", timeout=10).json())
        return keys["current"]

    def verify(token: str) -> dict[str, Any]:
        try:
            decoded = jwt.decode(token, key_set(), algorithms=["ES256"])
        except (JoseError, ValueError):
            decoded = jwt.decode(token, key_set(refresh=True), algorithms=["ES256"])
        claims = dict(decoded.claims)
        if claims.get("iss") != issuer or claims.get("aud") != audience or claims.get("exp", 0) <= time.time():
            raise ValueError(f"claims refused: iss={claims.get('iss')} aud={claims.get('aud')}")
        if decoded.header.get("typ") != "at+jwt":
            raise ValueError("not an access-token JWT")
        return claims

    def record(entry: dict[str, Any]) -> None:
        with log.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        try:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer":
                raise ValueError("no bearer token")
            claims = verify(token)
        except (JoseError, ValueError) as exc:
            record({"refused": str(exc)[:200], "authorization": authorization[:60]})
            await send({"type": "http.response.start", "status": 401, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        headers = dict(scope["headers"])
        body, receive = await _peeked(receive) if scope["method"] == "POST" else (b"", receive)
        message = json.loads(body) if body else {}
        entry = {key: claims.get(key) for key in ("sub", "org_id", "scope", "aud", "exp", "iat")} | {"token": token}
        session = headers.get(b"mcp-session-id", b"").decode()
        record(entry | {"method": message.get("method"), "session": session, "http": scope["method"]})
        if handshake_only and message.get("method") == "server/discover":
            error = {"code": -32601, "message": "Method not found"}
            reply = json.dumps({"jsonrpc": "2.0", "id": message.get("id"), "error": error}).encode()
            start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
            await send(start)
            await send({"type": "http.response.body", "body": reply})
            return
        if owned_sessions:  # what the SDK's BearerAuthBackend puts there
            principal = AccessToken(
                token=token,
                client_id=str(claims.get("client_id") or "bastion"),
                scopes=str(claims.get("scope") or "").split(),
                expires_at=int(claims["exp"]),
                subject=str(claims["sub"]),
                claims={"iss": claims["iss"]},
            )
            scope = {**scope, "user": AuthenticatedUser(principal)}
        await app(scope, receive, send)

    return wrapped


async def _peeked(receive: Any) -> tuple[bytes, Any]:
    """The request's body, and a `receive` that gives it again to the app."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    given = False

    async def again() -> dict[str, Any]:
        nonlocal given
        if given:
            return dict(await receive())
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, again


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--owned-sessions", action="store_true")
    parser.add_argument("--handshake-only", action="store_true")
    args = parser.parse_args()
    audience = f"http://127.0.0.1:{args.port}/mcp"
    app = build_server().streamable_http_app(streamable_http_path="/mcp")
    uvicorn.run(
        protected(
            app,
            issuer=args.issuer,
            audience=audience,
            log=args.log,
            owned_sessions=args.owned_sessions,
            handshake_only=args.handshake_only,
        ),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
    )


if __name__ == "__main__":
    main()

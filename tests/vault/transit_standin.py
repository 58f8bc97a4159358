"""A stand-in for HashiCorp Vault's transit engine, on loopback, for the `bastion.vault.transit` tests.

Vault itself cannot run on this machine (no package for it here), so this speaks the part
of its HTTP API Bastion uses, as Vault documents it: `POST /v1/<mount>/encrypt/<key>` and
`/decrypt/<key>` (base64 `plaintext`, `ciphertext` `vault:v<N>:<base64>`, base64
`associated_data` authenticated by AES-256-GCM), `POST /v1/<mount>/keys/<key>/rotate`,
the `X-Vault-Token` header, and `{"errors": [...]}` refusals. It records each request body.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["Transit", "running_transit"]


@dataclass
class Transit:
    url: str
    token: str
    versions: list[bytes] = field(default_factory=lambda: [AESGCM.generate_key(bit_length=256)])
    requests: list[dict[str, Any]] = field(default_factory=list)

    def answer(self, path: str, token: str | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests.append({"path": path, **body})
        if token != self.token:
            return 403, {"errors": ["permission denied"]}
        parts = path.strip("/").split("/")  # v1, mount, action, key[, rotate]
        aad = base64.b64decode(body.get("associated_data", ""))
        if parts[2] == "keys" and parts[-1] == "rotate":
            self.versions.append(AESGCM.generate_key(bit_length=256))
            return 204, {}
        if parts[2] == "encrypt":
            nonce = os.urandom(12)
            sealed = nonce + AESGCM(self.versions[-1]).encrypt(nonce, base64.b64decode(body["plaintext"]), aad)
            return 200, {"data": {"ciphertext": f"vault:v{len(self.versions)}:{base64.b64encode(sealed).decode()}"}}
        if parts[2] == "decrypt":
            _, version, data = str(body["ciphertext"]).split(":", 2)
            raw = base64.b64decode(data)
            try:
                plain = AESGCM(self.versions[int(version[1:]) - 1]).decrypt(raw[:12], raw[12:], aad)
            except (InvalidTag, IndexError, ValueError):
                return 400, {"errors": ["cipher: message authentication failed"]}
            return 200, {"data": {"plaintext": base64.b64encode(plain).decode()}}
        return 404, {"errors": [f"no handler for {path}"]}


@contextmanager
def running_transit(token: str = "s.test-token") -> Iterator[Transit]:
    transit: Transit | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert transit is not None
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            status, answer = transit.answer(self.path, self.headers.get("x-vault-token"), body)
            payload = json.dumps(answer).encode() if status != 204 else b""
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    transit = Transit(f"http://127.0.0.1:{server.server_address[1]}", token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield transit
    finally:
        server.shutdown()
        server.server_close()

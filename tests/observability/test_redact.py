"""The text redactor: each kind of secret leaves a log line, what support reads stays."""

from __future__ import annotations

import json

import pytest

from bastion.identity.tokens import new_token
from bastion.observability.redact import REDACTED, looks_secret, redact_text, redact_url

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSIsImF1ZCI6ImJhc3Rpb24ifQ.c2lnbmF0dXJlLWJ5dGVz"
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"


def _line(**fields: object) -> str:
    return json.dumps({"level": "info", "timestamp": "2025-01-01T00:00:00Z", **fields})


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("GET /api/origins Authorization: Bearer s3cr3t-bearer-value", "s3cr3t-bearer-value"),
        (_line(event="request", headers={"authorization": "Bearer abcdefgh12345678"}), "abcdefgh12345678"),
        (_line(event="upstream", header="Basic dXNlcjpwYXNzd29yZA=="), "dXNlcjpwYXNzd29yZA"),
        (_line(event="token_exchange", assertion_seen=JWT), JWT.split(".")[1]),
        (_line(event="token_issued", token=new_token()), "bst_"),
        ("refresh with bst_rt_" + "Zm9vYmFyYmF6cXV4" * 3, "Zm9vYmFyYmF6cXV4"),
        (_line(event="login_failed", password="hunter2-but-longer"), "hunter2-but-longer"),
        (_line(event="client", client_secret="cs-very-secret"), "cs-very-secret"),
        (_line(event="connect failed: password=pw-in-text and api_key='k 1'"), "pw-in-text"),
        (_line(event="connect failed: password=pw-in-text and api_key='k 1'"), "k 1"),
        (_line(event="cookie", headers={"Cookie": "sid=abc123; theme=dark"}), "abc123"),
        ("Set-Cookie: bastion_session=xyz789; HttpOnly; Secure", "xyz789"),
        (_line(event="signing_key", private_jwk=PEM), "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"),
        (_line(event="signing_key", private_jwk={"kty": "EC", "crv": "P-256", "d": "jwk-d-value"}), "jwk-d-value"),
        ("sentry_dsn=https://abc@o1.ingest.example/2", "abc@o1"),
        (_line(event="cut off", value=PEM[:60]), "MIIEvQIBADANBgkq"),
        (_line(event="db", url="postgresql+asyncpg://bastion:pg-pa/ss@db.internal:5432/bastion"), "pg-pa/ss"),
        ("redis down: redis://:redis-pass@cache:6379/0", "redis-pass"),
        ("connect postgresql://bastion:Tr0ub4dor'&3<x>@db:5432/bastion failed", "Tr0ub4dor"),
        (_line(event="db", url='redis://:S3cret"pw@redis:6379/0'), "S3cret"),
        ("redirect to https://app.example/cb?code=authcode123&state=s1", "authcode123"),
        ("stdio origin argv: /usr/bin/tool --token=argv-token-1 -v", "argv-token-1"),
        (_line(event="nested", detail='{"refresh_token": "rt\\"quoted", "x": 1}'), "quoted"),
    ],
)
def test_each_kind_of_secret_is_removed(line: str, secret: str) -> None:
    redacted = redact_text(line)
    assert secret not in redacted
    assert REDACTED in redacted


def test_a_redacted_json_line_is_still_json_with_its_ordinary_fields() -> None:
    line = _line(
        event="tool_call",
        request_id="req-7f3a",
        tool="inventory.search",
        path="/srv/bastion/var/audit-journal",
        headers={"authorization": "Bearer abcdefgh12345678", "x-api-key": 1234},
        credentials=["a", "b"],
    )
    record = json.loads(redact_text(line))
    assert record["headers"] == {"authorization": REDACTED, "x-api-key": REDACTED}
    assert record["credentials"] == REDACTED
    assert (record["event"], record["request_id"], record["tool"]) == ("tool_call", "req-7f3a", "inventory.search")
    assert record["path"] == "/srv/bastion/var/audit-journal"


def test_ids_digests_key_ids_and_durations_are_kept() -> None:
    digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    line = _line(
        event="audit_record",
        args_digest=digest,
        token_hash=digest,
        kid="k1",
        key_id="signing-2025",
        origin_id="7d1c0e7e-8f3a-4c1b-9d0e-2f4b6a8c0d1e",
        access_token_ttl_seconds=600,
        public_key="MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
        url="https://gateway.example/servers/inventory/mcp",
    )
    assert redact_text(line) == line


def test_ordinary_prose_is_left_alone() -> None:
    text = "origin inventory approved by admin; 3 tools (search, reserve, ship) refreshed in 0.42 s"
    assert redact_text(text) == text


def test_a_url_keeps_its_user_host_port_and_database_but_not_its_password() -> None:
    assert redact_url("postgresql+asyncpg://bastion:p%40ss@db.internal:5432/bastion?ssl=require") == (
        f"postgresql+asyncpg://bastion:{REDACTED}@db.internal:5432/bastion?ssl=require"
    )
    assert (
        redact_url("redis://:pw@cache:6379/0?password=x&db=1")
        == f"redis://:{REDACTED}@cache:6379/0?password={REDACTED}&db=1"
    )
    assert redact_url("sqlite+aiosqlite:///./var/bastion.db") == "sqlite+aiosqlite:///./var/bastion.db"
    # SQLAlchemy and redis-py take these unencoded: the password runs to the first "@" whatever it holds.
    assert redact_url("postgresql+asyncpg://bastion:Tr0ub4dor'&3 x\"<y>@db:5432/bastion") == (
        f"postgresql+asyncpg://bastion:{REDACTED}@db:5432/bastion"
    )
    assert redact_url('redis://:S3cret"pw@redis:6379/0') == f"redis://:{REDACTED}@redis:6379/0"
    assert redact_url("postgresql://u@db/x?sslpassword=k3y&sslmode=verify-full") == (
        f"postgresql://u@db/x?sslpassword={REDACTED}&sslmode=verify-full"
    )


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("api_key", True),
        ("X-Auth-Token", True),
        ("accessToken", True),
        ("client_secret", True),
        ("credentials", True),
        ("set-cookie", True),
        ("token_ttl_seconds", False),
        ("key_id", False),
        ("kid", False),
        ("public_key", False),
        ("monkey", False),
        ("sslpassword", True),
        ("dbpasswd", True),
        ("hotkey", False),
        ("session", False),
    ],
)
def test_secret_looking_names_are_told_from_names_about_secrets(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret

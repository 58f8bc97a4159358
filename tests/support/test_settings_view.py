"""config.json: every setting, each secret redacted according to how its field is marked."""

from __future__ import annotations

import re

import pytest
from pydantic import SecretStr

from bastion.config import Settings
from bastion.oauth.oidc_discovery import OidcProviderConfig
from bastion.observability.redact import REDACTED, looks_secret
from bastion.support.settings_view import secret_fields, settings_view

# Names that look like secrets (to the log redactor, or as URLs or headers) but are not, each with its reason.
# A new field whose name looks secret fails the test below until it is marked in bastion.config
# (json_schema_extra {"secret": ...}, or a SecretStr) or explained here.
_NOT_SECRET = {
    "master_key_file": "the path of the key file, not the keys",
    "vault_transit_key": "the transit key's name in Vault",
    "rate_limit_token": "a rate limit",
    "mcp_streams_per_token": "a count of streams",
    "require_strong_secrets": "a switch",
}
_URL_LIKE = re.compile(r"url|uri|addr|endpoint|dsn|idp|header")  # headers: OTLP keys ride in them


def _looks_secret(name: str) -> bool:
    return looks_secret(name) or _URL_LIKE.search(name) is not None


def test_every_field_that_looks_secret_is_marked_or_explained() -> None:
    marked = secret_fields()
    unmarked = [
        name for name in Settings.model_fields if _looks_secret(name) and name not in marked and name not in _NOT_SECRET
    ]
    assert unmarked == [], "mark these in bastion.config (json_schema_extra secret, or SecretStr) or explain them"
    assert set(_NOT_SECRET) <= set(Settings.model_fields)  # no stale entries


def test_an_oidc_providers_secret_fields_are_secret_strings() -> None:
    for name, field in OidcProviderConfig.model_fields.items():
        if looks_secret(name):
            assert SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ())), name


def test_the_known_secrets_are_marked_by_kind() -> None:
    marked = secret_fields()
    for name in ("admin_password", "master_key", "session_key", "vault_token"):
        assert marked[name] == "value"
    for name in ("database_url", "redis_url", "vault_addr", "enterprise_idps"):
        assert marked[name] == "url"


def test_set_secrets_show_as_redacted_unset_ones_as_null_and_urls_keep_their_host() -> None:
    settings = Settings(
        admin_password="an-admin-password-1",
        master_key=SecretStr("k1:" + "A" * 43),
        database_url="postgresql+asyncpg://bastion:db-password-2@db.internal:5432/bastion",
        enterprise_idps={"https://acme.okta.com": "https://jwks:jwks-password-3@acme.okta.com/keys"},
        oidc_providers=[
            {"name": "acme", "issuer": "https://acme.example", "client_id": "c1", "client_secret": "oidc-secret-4"}
        ],
        stdio_commands=[["/usr/bin/tool", "--api-key", "argv-secret-5", "--token=argv-secret-6"]],
    )
    view = settings_view(settings)
    shown = view["settings"]
    assert (shown["admin_password"], shown["master_key"]) == (REDACTED, REDACTED)
    assert (shown["session_key"], shown["vault_token"]) == (None, None)
    assert shown["database_url"] == f"postgresql+asyncpg://bastion:{REDACTED}@db.internal:5432/bastion"
    assert shown["enterprise_idps"] == {"https://acme.okta.com": f"https://jwks:{REDACTED}@acme.okta.com/keys"}
    assert shown["oidc_providers"][0]["client_secret"] == REDACTED
    assert shown["oidc_providers"][0]["client_id"] == "c1"
    assert shown["stdio_commands"] == [["/usr/bin/tool", "--api-key", REDACTED, f"--token={REDACTED}"]]
    assert shown["host"] == "127.0.0.1" and shown["port"] == 8080
    assert "admin_password" in view["set_explicitly"]
    assert "secret-" not in repr(view) and "password-" not in repr(view)


def test_bastion_variables_no_setting_reads_are_listed_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_DATABSE_URL", "postgresql+asyncpg://u:typo-secret@h/db")  # a typo
    view = settings_view(Settings())
    assert view["unrecognised_environment"] == ["BASTION_DATABSE_URL"]
    assert "typo-secret" not in repr(view)

"""`bastion support bundle`, run as a subprocess with every kind of secret configured.

Two runs at the same time (each imports the gateway, a few seconds): one against a migrated
SQLite store with a master key, Redis and a log file full of secrets; one against a PostgreSQL
URL nobody listens on. Neither may leak a secret, and the second must still give a bundle.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tarfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from bastion.identity.tokens import new_token
from bastion.observability.redact import REDACTED
from bastion.store.db import Database
from bastion.store.repos.vault import check_vault
from bastion.vault.keys import encode_key, keys_from_env
from tests.harness import free_port, schema_head
from tests.redis_server import shared_redis_url


@dataclass(frozen=True)
class Secrets:
    master_key: str = encode_key(os.urandom(32))
    session_key: str = encode_key(os.urandom(32))
    admin_password: str = "adm1n-" + secrets.token_urlsafe(16)
    redis_password: str = "redis-" + secrets.token_urlsafe(12)
    pg_password: str = "pg-" + secrets.token_urlsafe(12)
    vault_token: str = "hvs." + secrets.token_urlsafe(24)
    oidc_secret: str = "oidc-" + secrets.token_urlsafe(16)
    jwks_password: str = "jwks-" + secrets.token_urlsafe(12)
    argv_secret: str = "argv-" + secrets.token_urlsafe(12)
    bearer: str = "opaque-" + secrets.token_urlsafe(20)
    jwt_payload: str = "eyJzdWIiOiJhbGljZSIsImp0aSI6I" + secrets.token_urlsafe(12)
    api_token: str = new_token()
    log_password: str = "logpw-" + secrets.token_urlsafe(12)
    pem_body: str = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC" + secrets.token_urlsafe(24)
    log_url_password: str = "urlpw-" + secrets.token_urlsafe(12)

    def all(self) -> list[str]:
        return list(vars(self).values())


@dataclass(frozen=True)
class Run:
    stdout: str
    files: dict[str, str]

    def json(self, name: str) -> Any:
        return json.loads(self.files[name])


def _log_lines(s: Secrets) -> list[str]:
    jwt = f"eyJhbGciOiJSUzI1NiJ9.{s.jwt_payload}.c2lnbmF0dXJl"
    pem = f"-----BEGIN EC PRIVATE KEY-----\n{s.pem_body}\n-----END EC PRIVATE KEY-----"
    records: list[dict[str, Any]] = [
        {"event": "request", "request_id": "req-1", "headers": {"authorization": f"Bearer {s.bearer}"}},
        {"event": "token_exchange", "subject_token": jwt, "tool": "inventory.search"},
        {"event": "api_token_used", "detail": f"Authorization: Bearer {s.api_token}"},
        {"event": "sign_in_failed", "user": "alice", "password": s.log_password},
        {"event": "signing_key_loaded", "private_jwk": pem},
        {"event": "store_unavailable", "error": f"cannot reach postgresql://bastion:{s.log_url_password}@db/bastion"},
    ]
    return [json.dumps({"level": "warning", "timestamp": "2025-01-01T00:00:00Z", **r}) for r in records]


def _env(s: Secrets, directory: Path, database_url: str, redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    provider = {
        "name": "acme",
        "issuer": "https://login.acme.example",
        "client_id": "bastion",
        "client_secret": s.oidc_secret,
    }
    env.update(
        BASTION_DATABASE_URL=database_url,
        BASTION_MASTER_KEY=f"support-k1:{s.master_key}",
        BASTION_SESSION_KEY=s.session_key,
        BASTION_ADMIN_PASSWORD=s.admin_password,
        BASTION_REDIS_URL=redis_url.replace("redis://", f"redis://:{s.redis_password}@", 1),
        BASTION_VAULT_TOKEN=s.vault_token,
        BASTION_OIDC_PROVIDERS=json.dumps([provider]),
        BASTION_ENTERPRISE_IDPS=json.dumps(
            {"https://acme.okta.com": f"https://jwks:{s.jwks_password}@acme.okta.com/oauth2/v1/keys"}
        ),
        BASTION_STDIO_COMMANDS=json.dumps([["/usr/local/bin/origin", "--api-key", s.argv_secret]]),
        BASTION_LOG_FILE=str(directory / "logs" / "bastion.log"),
        BASTION_LOG_LEVEL="warning",
    )
    return env


def _bundle(directory: Path, env: dict[str, str], args: Sequence[str]) -> Run:
    out = directory / "bundle.tar.gz"
    completed = subprocess.run(
        [sys.executable, "-m", "bastion", "support", "bundle", "--out", str(out), *args],
        cwd=directory,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    with tarfile.open(out) as archive:
        files = {
            member.name.removeprefix("bastion-support/"): archive.extractfile(member).read().decode()  # type: ignore[union-attr]  # members are files
            for member in archive.getmembers()
        }
    return Run(completed.stdout, files)


def _prepare(directory: Path, s: Secrets) -> str:
    """A migrated SQLite store whose vault canary is sealed with the master key, and a log file."""
    url = f"sqlite+aiosqlite:///{directory / 'bastion.db'}"

    async def migrate() -> None:
        db = Database(url)
        await db.migrate()
        await check_vault(db, keys_from_env(f"support-k1:{s.master_key}"))  # what a start records
        await db.close()

    anyio.run(migrate)
    logs = directory / "logs"
    logs.mkdir()
    lines = _log_lines(s)
    (logs / "bastion.log.1").write_text("".join(line + "\n" for line in lines[:3]))
    (logs / "bastion.log").write_text("".join(line + "\n" for line in lines[3:]))
    return url


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Secrets, Run, Run]:
    s = Secrets()
    redis_url = shared_redis_url()
    healthy, broken = tmp_path_factory.mktemp("healthy"), tmp_path_factory.mktemp("broken")
    sqlite_url = _prepare(healthy, s)
    _prepare(broken, s)
    unreachable = f"postgresql+asyncpg://bastion:{s.pg_password}@127.0.0.1:{free_port()}/bastion"
    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(_bundle, healthy, _env(s, healthy, sqlite_url, redis_url), [])
        second = pool.submit(_bundle, broken, _env(s, broken, unreachable, redis_url), ["--log-lines", "2"])
        return s, first.result(), second.result()


def test_no_secret_appears_in_any_file_of_either_bundle(runs: tuple[Secrets, Run, Run]) -> None:
    s, *bundles = runs
    for run in bundles:
        assert set(run.files) == {"manifest.json", "config.json", "versions.json", "health.json", "logs.jsonl"}
        for name, text in run.files.items():
            leaked = [secret for secret in s.all() if secret in text]
            assert leaked == [], f"{name} shows {leaked}"
        assert not any(secret in run.stdout for secret in s.all())


def test_the_settings_are_all_there_secrets_as_redacted_and_host_names_kept(runs: tuple[Secrets, Run, Run]) -> None:
    _, healthy, broken = runs
    shown = healthy.json("config.json")["settings"]
    for name in ("master_key", "session_key", "admin_password", "vault_token"):
        assert shown[name] == REDACTED, name
    assert shown["vault_addr"] is None  # unset secrets show as null
    assert shown["redis_url"].startswith(f"redis://:{REDACTED}@127.0.0.1:")
    assert shown["oidc_providers"][0] | {"client_secret": None} == {
        "name": "acme",
        "issuer": "https://login.acme.example",
        "client_id": "bastion",
        "client_secret": None,
        "scopes": ["openid", "profile"],
        "group_claim": "groups",
        "role_map": {},
        "tenant": "default",
    }
    assert shown["oidc_providers"][0]["client_secret"] == REDACTED
    assert shown["enterprise_idps"] == {
        "https://acme.okta.com": f"https://jwks:{REDACTED}@acme.okta.com/oauth2/v1/keys"
    }
    assert shown["stdio_commands"] == [["/usr/local/bin/origin", "--api-key", REDACTED]]
    assert (shown["port"], shown["log_level"], shown["admin_user"]) == (8080, "warning", "admin")
    assert broken.json("config.json")["settings"]["database_url"].startswith(
        f"postgresql+asyncpg://bastion:{REDACTED}@127.0.0.1:"
    )


def test_versions_name_bastion_python_and_the_key_packages(runs: tuple[Secrets, Run, Run]) -> None:
    versions = runs[1].json("versions.json")
    assert versions["bastion"] and versions["python"] and versions["platform"]
    for package in ("mcp", "fastapi", "sqlalchemy", "alembic", "pydantic", "joserfc", "cryptography", "redis"):
        assert versions["packages"][package], package


def test_a_healthy_installation_reports_every_check_ok(runs: tuple[Secrets, Run, Run]) -> None:
    _, healthy, _ = runs
    health = healthy.json("health.json")
    assert health["database"]["status"] == "ok" and health["database"]["facts"]["dialect"] == "sqlite"
    assert health["schema"]["facts"] == {"current": [schema_head()], "head": schema_head()}
    assert health["vault"]["status"] == "ok" and health["vault"]["facts"]["current"] == "support-k1"
    assert health["redis"]["status"] == "ok"
    assert health["audit_journal"]["facts"]["files"] == 0
    path, summary = healthy.stdout.splitlines()
    assert path.endswith("bundle.tar.gz")
    assert summary.startswith("database ok, schema ok, vault ok, redis ok") and summary.endswith("; 6 log lines")


def test_an_unreachable_database_still_gives_a_bundle_that_says_so(runs: tuple[Secrets, Run, Run]) -> None:
    _, _, broken = runs
    health = broken.json("health.json")
    assert health["database"]["status"] == "failed"
    assert "refused" in health["database"]["detail"].lower()
    assert health["schema"]["status"] == health["vault"]["status"] == "skipped"
    assert broken.stdout.splitlines()[1].startswith("database failed, schema skipped, vault skipped")


def test_the_log_lines_are_the_last_ones_redacted_with_their_ordinary_fields(runs: tuple[Secrets, Run, Run]) -> None:
    _, healthy, broken = runs
    records = [json.loads(line) for line in healthy.files["logs.jsonl"].splitlines()]
    assert [r["event"] for r in records] == [
        "request",
        "token_exchange",
        "api_token_used",
        "sign_in_failed",
        "signing_key_loaded",
        "store_unavailable",
    ]
    assert records[0]["headers"] == {"authorization": REDACTED}
    assert (records[1]["tool"], records[3]["user"], records[3]["password"]) == ("inventory.search", "alice", REDACTED)
    assert [json.loads(line)["event"] for line in broken.files["logs.jsonl"].splitlines()] == [
        "signing_key_loaded",
        "store_unavailable",
    ]
    manifest = healthy.json("manifest.json")
    assert manifest["log_lines_included"] == 6 and manifest["notes"] == []


def test_a_bundle_path_that_cannot_be_written_is_a_clear_error(tmp_path: Path) -> None:
    link = tmp_path / "bundle.tar.gz"
    link.symlink_to(tmp_path / "elsewhere")
    env = {key: value for key, value in os.environ.items() if not key.startswith("BASTION_")}
    completed = subprocess.run(
        [sys.executable, "-m", "bastion", "support", "bundle", "--out", str(link)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert completed.returncode == 1
    assert f"cannot write {link}" in completed.stderr and "Traceback" not in completed.stderr
    assert not (tmp_path / "elsewhere").exists()

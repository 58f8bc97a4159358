"""Secure defaults: the start-up posture check, TLS with HSTS, loopback binding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.config import Settings
from bastion.posture import posture_findings
from tests.harness import run_bastion
from tests.tls import self_signed


def test_defaults_bind_loopback_and_raise_no_findings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("BASTION_")]:
        monkeypatch.delenv(name)
    settings = Settings()
    assert settings.host == "127.0.0.1"
    assert posture_findings(settings) == []


def test_weak_admin_password_and_open_bind_without_tls_are_reported() -> None:
    findings = posture_findings(Settings(admin_password="admin", host="0.0.0.0"))
    assert any("BASTION_ADMIN_PASSWORD is a default" in f for f in findings)
    assert any("without TLS" in f for f in findings)
    assert any("short or low-entropy" in f for f in posture_findings(Settings(admin_password="abc12")))
    assert posture_findings(Settings(admin_password="pX7-vQ2k_Lm9-Rt4zW8n")) == []
    for guessable in ("admin1234567890", "Admin@1234567", "abcdefghijklm", "qwertyuiopasd", "x-Admin-Q7v!k"):
        assert any("guessable" in f for f in posture_findings(Settings(admin_password=guessable))), guessable
    ops = Settings(admin_user="ops", admin_password="pX7-vQ2k_Lm9-OPS-Rt4zW8n")  # the user's name in it
    assert any("guessable" in f for f in posture_findings(ops))
    # A one-letter name is no word: a random password holding that letter is not guessable for it.
    assert posture_findings(Settings(admin_user="x", admin_password="pX7-vQ2k_Lm9-Rt4zW8n")) == []


def test_address_lists_that_take_in_everything_are_reported() -> None:
    https = {"public_url": "https://gateway.example"}
    proxies = posture_findings(Settings(trusted_proxies=["10.0.0.0/8", "::/0"], **https))  # type: ignore[arg-type]
    assert any("BASTION_TRUSTED_PROXIES trusts every address" in f for f in proxies)
    egress = posture_findings(Settings(egress_allow_cidrs=["0.0.0.0/0"]))
    assert any("BASTION_EGRESS_ALLOW_CIDRS allows every address" in f for f in egress)
    assert posture_findings(Settings(trusted_proxies=["10.0.0.0/8"], egress_allow_cidrs=["127.0.0.0/8"], **https)) == []  # type: ignore[arg-type]


def test_wildcard_origin_allowlist_is_reported() -> None:
    assert any("wildcard" in f for f in posture_findings(Settings(allowed_origins=["*"])))


def test_require_strong_secrets_refuses_to_start_with_a_weak_password(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BASTION_ADMIN_PASSWORD": "password",
        "BASTION_REQUIRE_STRONG_SECRETS": "true",
        "BASTION_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/b.db",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bastion", "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "BASTION_ADMIN_PASSWORD is a default or guessable value" in done.stderr
    assert "refusing to start" in done.stderr
    assert "password" not in done.stdout  # the secret itself is never echoed


def test_tls_serves_https_with_hsts(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    with run_bastion(tmp_path, ssl_certfile=cert, ssl_keyfile=key) as bastion:
        assert bastion.base_url.startswith("https://")
        response = bastion.http.get("/healthz")
        assert response.status_code == 200
        assert response.headers["strict-transport-security"].startswith("max-age=")


def test_a_proxy_without_an_https_public_url_is_reported() -> None:
    behind = Settings(trusted_proxies=["10.0.0.0/8"])
    assert any("BASTION_PUBLIC_URL=https://" in f for f in posture_findings(behind))
    named = Settings(trusted_proxies=["10.0.0.0/8"], public_url="https://gw.example")
    assert not any("BASTION_PUBLIC_URL" in f for f in posture_findings(named))

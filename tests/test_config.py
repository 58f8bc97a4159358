"""Settings from the environment: list variables are comma-separated or JSON, as operators write them."""

from __future__ import annotations

import pytest

from bastion.config import Settings


def test_list_settings_accept_commas_and_json_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_EGRESS_ALLOW_CIDRS", "127.0.0.0/8, 10.0.0.0/8")
    monkeypatch.setenv("BASTION_ALLOWED_ORIGINS", '["http://a.example", "http://b.example"]')
    settings = Settings()
    assert settings.egress_allow_cidrs == ["127.0.0.0/8", "10.0.0.0/8"]
    assert settings.allowed_origins == ["http://a.example", "http://b.example"]


def test_a_public_url_is_used_with_a_lowercase_scheme_and_host() -> None:
    assert Settings(public_url="HTTPS://Gateway.Example.COM/Base/").base_url() == "https://gateway.example.com/Base"

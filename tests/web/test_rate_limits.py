"""Per-address rate limits on the OAuth endpoints: 429 with Retry-After, as an RFC 6749 §5.2 body."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.harness import run_bastion

_CLIENT = {"redirect_uris": ["http://127.0.0.1:9999/callback"], "client_name": "agent"}


def test_registration_beyond_its_rate_is_refused_with_retry_after_and_nothing_is_registered(tmp_path: Path) -> None:
    overrides = {"rate_limit_registration": "2/minute", "rate_limit_token": "1/minute"}
    with run_bastion(tmp_path, **overrides) as bastion, httpx.Client(base_url=bastion.base_url) as http:
        for _ in range(2):
            assert http.post("/oauth/register", json=_CLIENT).status_code == 201
        limited = http.post("/oauth/register", json=_CLIENT)
        assert limited.status_code == 429
        assert limited.json()["error"] == "temporarily_unavailable"
        assert "at most 2 per 1 minute" in limited.json()["error_description"]
        assert 0 < int(limited.headers["retry-after"]) <= 60

        # The token endpoint has its own window: its first request is answered on its merits.
        first = http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "nobody"})
        assert first.status_code == 401 and first.json()["error"] == "invalid_client"
        second = http.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "nobody"})
        assert second.status_code == 429

"""A console session in use is renewed (sliding), keeps its CSRF token, and still ends: when left idle
for its lifetime, and at the latest BASTION_CONSOLE_SESSION_MAX_SECONDS after signing in."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from bastion.oauth.session_tokens import SessionTokens
from tests.console.client import Console, csrf_of
from tests.harness import Bastion


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(gateway: Bastion) -> Iterator[_Clock]:
    """The gateway's session tokens read this clock, so a test can let time pass."""
    auth = gateway.services.auth
    real = auth.sessions
    moved = _Clock()
    auth.sessions = SessionTokens(lambda: auth.keyring, auth.issuer, gateway.settings.login_session_seconds, now=moved)
    yield moved
    auth.sessions = real


def _renewed(page: httpx.Response) -> bool:
    return any(value.startswith("bastion_session=") for value in page.headers.get_list("set-cookie"))


def test_a_session_in_use_is_renewed_and_a_form_from_before_still_posts(gateway: Bastion, clock: _Clock) -> None:
    lifetime = gateway.settings.login_session_seconds
    console = Console(gateway)
    try:
        early = console.get("/admin/tokens")
        assert early.status_code == 200 and not _renewed(early)  # nothing to renew yet
        clock.now += lifetime * 0.6
        page = console.get("/admin/tokens")
        assert page.status_code == 200 and _renewed(page)
        assert csrf_of(page.text) == console.csrf  # the session's id, not the token, makes the CSRF token
        # The renewed cookie carries the session past the first token's expiry.
        clock.now += lifetime * 0.6
        created = console.post("/admin/tokens", {"name": "after-renewal", "scopes": "mcp", "expires_in_days": "1"})
        assert created.status_code == 201, created.text
        assert any(token["name"] == "after-renewal" for token in gateway.ok("GET", "/api/tokens"))
    finally:
        console.close()


def test_an_idle_session_ends_with_its_token(gateway: Bastion, clock: _Clock) -> None:
    console = Console(gateway)
    try:
        clock.now += gateway.settings.login_session_seconds + 10  # past expiry and the verifier's leeway
        gone = console.get("/admin/tokens")
        assert gone.status_code == 303 and gone.headers["location"].startswith("/admin/login")
    finally:
        console.close()


def test_no_session_outlives_the_maximum_however_busy(gateway: Bastion, clock: _Clock) -> None:
    lifetime, longest = gateway.settings.login_session_seconds, gateway.settings.console_session_max_seconds
    console = Console(gateway)
    began, renewals = clock.now, 0
    try:
        while clock.now + lifetime * 0.5 < began + longest:  # a page every half lifetime
            clock.now += lifetime * 0.5
            page = console.get("/admin")
            assert page.status_code == 200
            renewals += _renewed(page)
        assert renewals >= longest // lifetime  # kept alive by use, far past one lifetime
        clock.now = began + longest + 10
        ended = console.get("/admin/tokens")
        assert ended.status_code == 303 and ended.headers["location"].startswith("/admin/login")
    finally:
        console.close()


def test_signing_out_of_a_session_due_for_renewal_ends_it(gateway: Bastion, clock: _Clock) -> None:
    console = Console(gateway)
    try:
        clock.now += gateway.settings.login_session_seconds * 0.6  # renewal is due on the next page
        out = console.post("/admin/logout", {})
        assert out.status_code == 303
        cookies = out.headers.get_list("set-cookie")
        # Both deleted (the authorization flow's sign-in with the session), the session not renewed.
        assert {c.split(";", 1)[0] for c in cookies} == {'bastion_session=""', 'bastion_login=""'}, cookies
        after = console.get("/admin/tokens")
        assert after.status_code == 303 and after.headers["location"].startswith("/admin/login")
    finally:
        console.close()

"""The auth-session API: sign in, who am I, sign out; forged session JWTs are refused."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from pathlib import Path

import httpx

from bastion.oauth.keys import KeyRing
from bastion.oauth.session_tokens import SessionTokens
from tests.harness import ADMIN_PASSWORD, Bastion, run_bastion


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _whoami(bastion: Bastion, cookie: str) -> httpx.Response:
    with httpx.Client(base_url=bastion.base_url, cookies={"bastion_session": cookie}) as http:
        return http.get("/auth/session")


def test_signing_in_sets_a_strict_httponly_cookie_that_says_who_is_signed_in_until_sign_out(bastion: Bastion) -> None:
    with httpx.Client(base_url=bastion.base_url) as http:
        assert http.get("/auth/session").status_code == 401
        signed_in = http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert signed_in.status_code == 200
        body = signed_in.json()
        assert body["username"] == "admin" and len(body["csrf"]) == 64
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        who = http.get("/auth/session").json()
        assert who["username"] == "admin" and who["expires_at"] > time.time()
        assert http.delete("/auth/session").status_code == 204
        assert http.get("/auth/session").status_code == 401


def test_a_copy_of_the_cookie_is_refused_once_its_session_signed_out_renewals_included(bastion: Bastion) -> None:
    """Signing out ends the session itself, not only the browser's cookie: a copy kept elsewhere (a
    stolen one, say) is refused from then on, and so is a renewal of it made before."""
    with httpx.Client(base_url=bastion.base_url) as http:
        signed_in = http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
        copy = signed_in.cookies["bastion_session"]
        claims = bastion.services.auth.sessions.verify(copy, purpose="session")
        renewal = bastion.services.auth.sessions.issue(
            claims["sub"], purpose="session", extra={"name": "admin", "sid": claims["sid"], "auth_time": claims["iat"]}
        )
        with httpx.Client(base_url=bastion.base_url) as elsewhere:  # another browser: another session
            other = elsewhere.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD}).cookies
        for cookie in (copy, renewal, other["bastion_session"]):
            assert _whoami(bastion, cookie).status_code == 200
        http.cookies.set("bastion_session", copy)
        assert http.delete("/auth/session").status_code == 204
    for cookie in (copy, renewal):
        refused = _whoami(bastion, cookie)
        assert refused.status_code == 401 and "signed out" in refused.json()["error"]["message"]
    assert _whoami(bastion, other["bastion_session"]).status_code == 200  # another session of the same person
    # Signing out again, or without a session, changes nothing and says so the same way.
    with httpx.Client(base_url=bastion.base_url, cookies={"bastion_session": copy}) as again:
        assert again.delete("/auth/session").status_code == 204
    with httpx.Client(base_url=bastion.base_url) as nobody:
        assert nobody.delete("/auth/session").status_code == 204


def test_signing_in_on_a_browser_ends_the_session_it_held(bastion: Bastion) -> None:
    """Someone signing in on a browser another person used: a copy of that person's cookie (taken
    earlier) must not outlive the sign-in that replaced it."""
    bastion.ok("POST", "/api/users", json={"username": "second-person", "password": ADMIN_PASSWORD})
    with httpx.Client(base_url=bastion.base_url) as http:
        first = http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
        copy = first.cookies["bastion_session"]
        second = http.post("/auth/session", json={"username": "second-person", "password": ADMIN_PASSWORD})
        assert second.status_code == 200 and http.get("/auth/session").json()["username"] == "second-person"
    refused = _whoami(bastion, copy)
    assert refused.status_code == 401 and "signed out" in refused.json()["error"]["message"]


def test_a_sign_in_that_cannot_end_the_session_the_browser_held_is_refused(bastion: Bastion) -> None:
    """The store does not answer when the session held before is to be ended: the sign-in is
    refused (503) rather than leaving that session alive behind a new one."""
    database = Path(bastion.settings.database_url.removeprefix("sqlite+aiosqlite:///"))
    with httpx.Client(base_url=bastion.base_url) as http:
        first = http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
        held = first.cookies["bastion_session"]
        with sqlite3.connect(database) as db:
            db.execute("ALTER TABLE spent_ids RENAME TO spent_ids_away")
        try:
            refused = http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
        finally:
            with sqlite3.connect(database) as db:
                db.execute("ALTER TABLE spent_ids_away RENAME TO spent_ids")
    assert refused.status_code == 503 and "set-cookie" not in refused.headers, refused.text
    assert _whoami(bastion, held).status_code == 200  # not ended, and the browser still holds it


def test_a_wrong_password_is_refused_without_a_cookie(bastion: Bastion) -> None:
    with httpx.Client(base_url=bastion.base_url) as http:
        refused = http.post("/auth/session", json={"username": "admin", "password": "not it at all"})
        assert refused.status_code == 401 and "set-cookie" not in refused.headers


def test_forged_session_tokens_are_refused(bastion: Bastion) -> None:
    sessions = bastion.services.auth.sessions
    admin_id = next(u["id"] for u in bastion.ok("GET", "/api/users") if u["username"] == "admin")
    good = sessions.issue(admin_id, purpose="session", extra={"name": "admin"})
    header, payload, _signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))

    unsigned = f"{_b64({'alg': 'none', 'typ': 'bastion-session+jwt'})}.{_b64(claims)}."
    tampered = f"{header}.{_b64({**claims, 'sub': 'someone-else'})}.{_signature}"
    other_ring = KeyRing.fresh(time.time())
    foreign = SessionTokens(lambda: other_ring, bastion.base_url).issue("admin", purpose="session")
    wrong_purpose = sessions.issue("admin", purpose="login")

    assert _whoami(bastion, good).status_code == 200
    for forged in (unsigned, tampered, foreign, wrong_purpose, "not-a-jwt"):
        response = _whoami(bastion, forged)
        assert response.status_code == 401, forged
        assert "token" in response.json()["error"]["message"].lower()


def test_sign_in_is_locked_out_like_every_password_login(tmp_path: Path) -> None:
    with run_bastion(tmp_path, lockout_threshold=2) as bastion, httpx.Client(base_url=bastion.base_url) as http:
        for _ in range(2):
            http.post("/auth/session", json={"username": "admin", "password": "wrong password"})
        locked = http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert locked.status_code == 401 and "locked" in locked.json()["error"]["message"]


def test_sign_in_attempts_from_one_address_are_rate_limited_with_retry_after(tmp_path: Path) -> None:
    with (
        run_bastion(tmp_path, rate_limit_sign_in="3/minute") as bastion,
        httpx.Client(base_url=bastion.base_url) as http,
    ):
        # The harness signed in once already (its admin API login): two more fill the window.
        for _ in range(2):
            assert http.post("/auth/session", json={"username": "nobody", "password": "x"}).status_code == 401
        limited = http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert limited.status_code == 429
        assert 0 < int(limited.headers["retry-after"]) <= 60
        assert "at most 3 per 1 minute" in limited.json()["error"]["message"]


def test_signing_out_or_in_drops_the_authorization_flows_sign_in_cookie_too(bastion: Bastion) -> None:
    """A person who approved an application at /oauth/login, then signed out: the next person to
    authorize one on this browser must not do it as them (that cookie lives on its own otherwise)."""

    def dropped(response: httpx.Response) -> bool:
        return any(
            c.startswith("bastion_login=") and "max-age=0" in c.lower() for c in response.headers.get_list("set-cookie")
        )

    with httpx.Client(base_url=bastion.base_url) as http:
        signed_in = http.post("/auth/session", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert signed_in.status_code == 200 and dropped(signed_in)  # someone signed in
        signed_out = http.delete("/auth/session")
        assert signed_out.status_code == 204 and dropped(signed_out)


def test_a_sign_in_posted_from_another_site_is_refused(bastion: Bastion) -> None:
    """Login CSRF: a cross-site fetch could otherwise sign the browser in as the attacker's user."""
    with httpx.Client(base_url=bastion.base_url) as http:
        body = {"username": "admin", "password": ADMIN_PASSWORD}
        refused = http.post("/auth/session", json=body, headers={"sec-fetch-site": "cross-site"})
        assert refused.status_code == 403 and "bastion_session" not in http.cookies
        assert http.post("/auth/session", json=body, headers={"sec-fetch-site": "same-origin"}).status_code == 200

"""The authorization endpoint, the code grant and the refresh grant, driven as a client and a person would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bastion.catalog.snapshot import ServerView, Snapshot
from bastion.identity.tokens import hash_token
from bastion.logins import REFUSED
from bastion.oauth.redirects import redirect_uri_matches
from bastion.oauth.resources import InvalidTarget, server_for_resource
from bastion.store.models import LoginEvent, OAuthCode, User
from bastion.store.tenancy import SYSTEM
from tests.harness import ADMIN_PASSWORD, Bastion, run_bastion
from tests.oauth.flows import (
    REDIRECT_URI,
    Flow,
    Pkce,
    client_link,
    error_of,
    mcp_request,
    own_database,
    page_message,
    publish_demo,
)
from tests.oauth_browser import Redirect, hidden_field

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("authorization")) as bastion:
        publish_demo(bastion, "demo", "other")
        bastion.ok("POST", "/api/servers", json={"slug": "draft", "title": "Draft"})  # never published
        yield bastion


@pytest.fixture
async def flow(gw: Bastion) -> AsyncIterator[Flow]:
    async with Flow(gw) as person:
        yield person


async def _client(flow: Flow) -> str:
    return str((await flow.register())["client_id"])


async def _redirect(flow: Flow, path: str) -> Redirect:
    """The answer to an authorization request that fails before anyone signs in: an error page
    whose link takes the person back to the client with the error (never an automatic redirect:
    RFC 9700 §4.11.2, the URI is whatever the client's registrant chose)."""
    redirect = client_link(await flow.http.get(path))
    assert redirect.location.startswith(REDIRECT_URI + "?"), redirect.location
    return redirect


def _assert_error(response_json: dict[str, str], error: str, description: str) -> None:
    assert response_json["error"] == error, response_json
    assert description in response_json["error_description"], response_json


# --- the authorization endpoint ----------------------------------------------------------------


async def test_a_request_without_pkce_goes_back_as_invalid_request_with_state_and_iss(gw: Bastion, flow: Flow) -> None:
    client_id = await _client(flow)
    path = flow.authorize_path(client_id, Pkce.new(), code_challenge=None, code_challenge_method=None, state="s-42")
    redirect = await _redirect(flow, path)
    error, description = error_of(redirect)
    assert error == "invalid_request" and "code_challenge is required" in description
    assert redirect.params["state"] == "s-42"
    assert redirect.params["iss"] == gw.base_url  # RFC 9207 §2: on error responses too


def test_loopback_port_variance_does_not_extend_to_userinfo() -> None:
    """`http://trusted.example@127.0.0.1:1234/cb` goes to loopback, but a consent page showing its
    host would show `trusted.example`: it matches no registered loopback URI."""
    registered = ("http://127.0.0.1/cb",)
    assert redirect_uri_matches("http://127.0.0.1:1234/cb", registered)
    assert not redirect_uri_matches("http://trusted.example@127.0.0.1:1234/cb", registered)
    assert not redirect_uri_matches("http://user:pw@127.0.0.1/cb", registered)


async def test_an_overlong_nonce_goes_back_as_invalid_request_and_stores_nothing(flow: Flow) -> None:
    client_id = await _client(flow)
    redirect = await _redirect(flow, flow.authorize_path(client_id, Pkce.new(), nonce="n" * 256))
    error, description = error_of(redirect)
    assert error == "invalid_request" and "nonce must be 1 to 255 characters" in description


async def test_a_repeated_or_nul_carrying_parameter_is_an_error_page_not_a_redirect(flow: Flow) -> None:
    """RFC 6749 §3.1: parameters are given once; which `state` or `redirect_uri` would count is not
    guessed. A NUL, which no parameter holds, is refused before anything is looked up."""
    client_id = await _client(flow)
    path = flow.authorize_path(client_id, Pkce.new())
    for extra, message in (("&state=second", "state is given more than once"), ("&nonce=a%00b", "NUL character")):
        page = await flow.http.get(path + extra)
        assert page.status_code == 400 and message in page_message(page), page.text[:300]
    refused = await flow.http.post("/oauth/token", data={"grant_type": "authorization_code", "code": "a\x00b"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://attacker.example"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site"},
        {"origin": "null"},  # a sandboxed frame's post, no Sec-Fetch-Site to vouch for it
        {"origin": "null", "sec-fetch-site": "cross-site"},
    ],
)
async def test_a_sign_in_posted_from_another_site_is_refused_and_signs_nobody_in(
    gw: Bastion, flow: Flow, headers: dict[str, str]
) -> None:
    """Login CSRF: another site posting its own user's password (and an authorization request it
    fetched) would leave this browser signed in as that user, and consent silently granted to them."""
    client_id = await _client(flow)
    login = await flow.http.get(flow.authorize_path(client_id, Pkce.new()))
    form = {"username": "admin", "password": ADMIN_PASSWORD, "request": hidden_field(login.text, "request")}
    forged = await flow.http.post("/oauth/login", data=form, headers=headers)
    assert forged.status_code == 403 and "posted from another site" in page_message(forged)
    assert "bastion_login" not in flow.http.cookies
    same = await flow.http.post(
        "/oauth/login", data=form, headers={"origin": gw.base_url, "sec-fetch-site": "same-origin"}
    )
    assert same.status_code == 200 and "Allow access?" in same.text


async def test_a_browser_posting_origin_null_from_bastions_own_page_is_signed_in(flow: Flow) -> None:
    """Bastion's pages carry `Referrer-Policy: no-referrer`, so a browser posts their forms with
    `Origin: null` (seen from Chromium); its `Sec-Fetch-Site: same-origin` is what says it is ours."""
    client_id = await _client(flow)
    login = await flow.http.get(flow.authorize_path(client_id, Pkce.new()))
    assert login.headers["referrer-policy"] == "no-referrer"
    form = {"username": "admin", "password": ADMIN_PASSWORD, "request": hidden_field(login.text, "request")}
    signed_in = await flow.http.post(
        "/oauth/login", data=form, headers={"origin": "null", "sec-fetch-site": "same-origin"}
    )
    assert signed_in.status_code == 200 and "Allow access?" in signed_in.text


async def test_the_plain_code_challenge_method_is_refused(flow: Flow) -> None:
    client_id = await _client(flow)
    pkce = Pkce.new()
    redirect = await _redirect(flow, flow.authorize_path(client_id, pkce, code_challenge_method="plain"))
    error, description = error_of(redirect)
    assert error == "invalid_request" and "must be S256" in description
    omitted = await _redirect(flow, flow.authorize_path(client_id, pkce, code_challenge_method=None))
    assert error_of(omitted)[0] == "invalid_request"  # RFC 7636 §4.3's default, plain, is not assumed


async def test_an_unregistered_redirect_uri_gets_an_error_page_and_never_a_redirect(gw: Bastion, flow: Flow) -> None:
    client_id = await _client(flow)
    path = flow.authorize_path(client_id, Pkce.new(), redirect_uri="https://attacker.example/steal")
    response = await flow.http.get(path)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "does not match any redirect URI registered" in page_message(response)
    assert "attacker.example" not in response.text


async def test_a_loopback_redirect_may_use_another_port_but_not_another_path(flow: Flow) -> None:
    client_id = await _client(flow)
    other_port = "http://127.0.0.1:50123/callback"
    pkce = Pkce.new()
    code = await flow.code_for(client_id, pkce, redirect_uri=other_port)  # RFC 8252 §7.3
    exchanged = await flow.exchange(client_id, code, pkce, redirect_uri=other_port)
    assert exchanged.status_code == 200, exchanged.text
    other_path = await flow.http.get(
        flow.authorize_path(client_id, Pkce.new(), redirect_uri="http://127.0.0.1:33418/elsewhere")
    )
    assert other_path.status_code == 400 and "location" not in other_path.headers
    assert "does not match any redirect URI registered" in page_message(other_path)


@pytest.mark.parametrize("client_id", ["never-registered", None])
async def test_an_unknown_or_missing_client_id_gets_an_error_page(flow: Flow, client_id: str | None) -> None:
    path = flow.authorize_path("placeholder", Pkce.new(), client_id=client_id)
    response = await flow.http.get(path)
    assert response.status_code == 401
    assert "location" not in response.headers
    expected = "unknown client_id" if client_id else "client_id is required"
    assert expected in page_message(response)


@pytest.mark.parametrize(
    ("slug", "resource"),
    [
        (None, None),
        ("draft", None),
        ("no-such-server", None),
        (None, "https://elsewhere.example/servers/demo/mcp"),
    ],
)
async def test_a_missing_or_unpublished_resource_is_invalid_target(
    gw: Bastion, flow: Flow, slug: str | None, resource: str | None
) -> None:
    client_id = await _client(flow)
    path = flow.authorize_path(client_id, Pkce.new(), slug=slug, **({"resource": resource} if resource else {}))
    redirect = await _redirect(flow, path)
    error, description = error_of(redirect)
    assert error == "invalid_target"
    expected = "resource parameter is required" if slug is None and resource is None else "not a published virtual"
    assert expected in description
    assert "draft" not in description or slug == "draft"
    assert redirect.params["iss"] == gw.base_url


async def test_an_unknown_scope_is_invalid_scope(flow: Flow) -> None:
    client_id = await _client(flow)
    redirect = await _redirect(flow, flow.authorize_path(client_id, Pkce.new(), scope="mcp admin"))
    error, description = error_of(redirect)
    assert error == "invalid_scope" and "unknown scope 'admin'" in description


async def test_a_client_asks_for_no_more_than_the_scope_it_registered(flow: Flow) -> None:
    """RFC 7591 §2: the registered `scope` bounds the client's requests; omitted, it is asked for."""
    client_id = str((await flow.register(scope="mcp:read"))["client_id"])
    redirect = await _redirect(flow, flow.authorize_path(client_id, Pkce.new(), scope="mcp"))
    error, description = error_of(redirect)
    assert error == "invalid_scope" and "more than this client registered (mcp:read)" in description
    page = await flow.consent_page(flow.authorize_path(client_id, Pkce.new()))
    assert page.status_code == 200 and "mcp:read" in page.text and "mcp:write" not in page.text
    # `offline_access` (SEP-2207) asks for a refresh token and grants nothing: never refused for it.
    offline = await flow.consent_page(flow.authorize_path(client_id, Pkce.new(), scope="mcp:read offline_access"))
    assert offline.status_code == 200 and "Allow access?" in offline.text


async def test_a_wrong_response_type_is_unsupported_response_type(flow: Flow) -> None:
    client_id = await _client(flow)
    redirect = await _redirect(flow, flow.authorize_path(client_id, Pkce.new(), response_type="token"))
    error, description = error_of(redirect)
    assert error == "unsupported_response_type" and "must be 'code'" in description


async def test_a_successful_authorization_returns_the_state_and_iss_with_the_code(gw: Bastion, flow: Flow) -> None:
    client_id = await _client(flow)
    state = "a state/with spaces & symbols=?"
    redirect = await flow.authorize(flow.authorize_path(client_id, Pkce.new(), state=state))
    assert redirect.location.startswith(REDIRECT_URI + "?")
    assert redirect.params["code"]
    assert redirect.params["state"] == state
    assert redirect.params["iss"] == gw.base_url


async def test_denying_consent_sends_access_denied_to_the_client(gw: Bastion, flow: Flow) -> None:
    client_id = await _client(flow)
    redirect = await flow.authorize(flow.authorize_path(client_id, Pkce.new(), state="deny-me"), decision="deny")
    error, description = error_of(redirect)
    assert error == "access_denied" and "denied" in description
    assert redirect.params["state"] == "deny-me" and redirect.params["iss"] == gw.base_url


async def test_a_person_with_no_access_to_the_server_is_sent_back_with_access_denied(gw: Bastion, flow: Flow) -> None:
    client_id = await _client(flow)
    gw.ok("POST", "/api/tenants", json={"slug": "elsewhere"})
    body = {"username": "stranger", "password": ADMIN_PASSWORD, "roles": ["member"]}
    gw.ok("POST", "/api/users", json=body, headers={"x-bastion-tenant": "elsewhere"})
    async with Flow(gw, username="stranger") as stranger:
        redirect = await stranger.authorize(stranger.authorize_path(client_id, Pkce.new(), state="s"))
    error, description = error_of(redirect)
    assert error == "access_denied" and "no access to 'demo'" in description
    assert redirect.params["state"] == "s"


async def test_consent_is_remembered_for_the_same_client_server_and_scopes(gw: Bastion, flow: Flow) -> None:
    web = "https://app.example/callback"  # TLS proves where the code goes: only this client gets it
    client_id = str((await flow.register(redirect_uris=[web]))["client_id"])

    def path(**extra: str) -> str:
        return flow.authorize_path(client_id, Pkce.new(), redirect_uri=web, **{"scope": "mcp:read", **extra})

    first = await flow.consent_page(path())
    assert first.status_code == 200 and "Allow access?" in first.text
    await flow.decide(first)
    again = await flow.http.get(path(state="2nd"))
    assert again.status_code == 302, again.text  # straight back to the client: no consent page
    assert Redirect(again.headers["location"]).params.keys() >= {"code", "state", "iss"}
    # A new browser signs in and goes straight back too: consent belongs to the user, not the cookie.
    async with Flow(gw) as fresh:
        after_login = await fresh.consent_page(path())
        assert after_login.status_code == 302 and "code=" in after_login.headers["location"]
    # More than was consented to asks again; so does another virtual server.
    wider = await flow.http.get(path(scope="mcp:read mcp:write"))
    assert wider.status_code == 200 and "Allow access?" in wider.text
    other = await flow.http.get(path(slug="other"))
    assert other.status_code == 200 and "Allow access?" in other.text


async def test_a_redirect_uri_matches_as_the_client_registered_it(flow: Flow) -> None:
    """Registration keeps the URI as sent (a URL type would lower-case the host, resolve dot
    segments, add a slash), so the client's own URI matches exactly at the authorization endpoint."""
    sent = "https://App.Example.com/oauth/../callback"
    registered = await flow.register(redirect_uris=[sent])
    assert registered["redirect_uris"] == [sent]
    page = await flow.consent_page(flow.authorize_path(str(registered["client_id"]), Pkce.new(), redirect_uri=sent))
    assert page.status_code == 200 and "Allow access?" in page.text, page.text[:500]


def test_only_an_https_redirect_to_another_host_proves_the_client() -> None:
    from bastion.oauth.redirects import client_proven_by

    assert client_proven_by("https://app.example/cb") and client_proven_by("https://10.0.0.7/cb")
    this_machine = ["localhost.", "app.localhost", "127.1", "127.0.0.2", "0.0.0.0", "[::1]", "[::ffff:127.0.0.1]"]
    assert not any(client_proven_by(f"https://{host}/cb") for host in this_machine)
    assert not client_proven_by("http://app.example/cb") and not client_proven_by("com.example.app:/cb")


async def test_a_remembered_consent_asks_again_where_any_local_app_could_take_the_code(flow: Flow) -> None:
    """RFC 8252 §8.6: a loopback redirect (or a private-use scheme) is any local app's to listen on,
    and a public client's id proves nothing: another app asking with it is asked about again."""
    client_id = await _client(flow)
    await flow.decide(await flow.consent_page(flow.authorize_path(client_id, Pkce.new())))
    again = await flow.http.get(flow.authorize_path(client_id, Pkce.new()))
    assert again.status_code == 200 and "Allow access?" in again.text


async def test_the_consent_form_without_its_csrf_token_or_login_cookie_grants_nothing(gw: Bastion, flow: Flow) -> None:
    client_id = await _client(flow)
    consent = await flow.consent_page(flow.authorize_path(client_id, Pkce.new()))
    assert consent.status_code == 200
    request = hidden_field(consent.text, "request")
    csrf = hidden_field(consent.text, "csrf")
    missing = await flow.http.post("/oauth/consent", data={"request": request, "decision": "approve"})
    wrong = await flow.http.post("/oauth/consent", data={"request": request, "csrf": "0" * 64, "decision": "approve"})
    async with Flow(gw) as stranger:  # a cross-site form post carries no SameSite=Lax cookie
        no_cookie = await stranger.http.post(
            "/oauth/consent", data={"request": request, "csrf": csrf, "decision": "approve"}
        )
    for refused, expected in [(missing, "CSRF token"), (wrong, "CSRF token"), (no_cookie, "sign-in has expired")]:
        assert refused.status_code == 403, refused.text
        assert "location" not in refused.headers
        assert expected in page_message(refused)
    async with own_database(gw) as db, db.session(SYSTEM) as session:
        codes = await session.scalar(
            select(func.count()).select_from(OAuthCode).where(OAuthCode.client_id == client_id)
        )
    assert codes == 0
    granted = await flow.decide(consent)  # the genuine form still works
    assert "code" in granted.params


# --- the code grant ------------------------------------------------------------------------------


async def test_a_code_verifier_that_does_not_match_is_invalid_grant(flow: Flow) -> None:
    client_id = await _client(flow)
    pkce = Pkce.new()
    code = await flow.code_for(client_id, pkce)
    response = await flow.exchange(client_id, code, Pkce.new())
    assert response.status_code == 400
    _assert_error(response.json(), "invalid_grant", "code_verifier does not match the code_challenge")


async def test_a_missing_code_verifier_is_invalid_grant(flow: Flow) -> None:
    client_id = await _client(flow)
    pkce = Pkce.new()
    code = await flow.code_for(client_id, pkce)
    response = await flow.exchange(client_id, code, pkce, code_verifier=None)
    assert response.status_code == 400
    _assert_error(response.json(), "invalid_grant", "code_verifier is missing or malformed")


async def test_a_reused_code_is_refused_and_revokes_the_tokens_of_its_first_use(gw: Bastion, flow: Flow) -> None:
    client_id = await _client(flow)
    pkce = Pkce.new()
    code = await flow.code_for(client_id, pkce)
    first = await flow.exchange(client_id, code, pkce)
    assert first.status_code == 200
    tokens = first.json()
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), tokens["access_token"])).status_code == 200
    replay = await flow.exchange(client_id, code, pkce)
    assert replay.status_code == 400
    _assert_error(replay.json(), "invalid_grant", "already used; the tokens it issued are revoked")
    after = await mcp_request(flow.http, gw.mcp_url("demo"), tokens["access_token"])
    assert after.status_code == 401
    assert 'error="invalid_token"' in after.headers["www-authenticate"]
    refreshed = await flow.refresh(client_id, tokens["refresh_token"])
    assert refreshed.status_code == 400
    _assert_error(refreshed.json(), "invalid_grant", "revoked")


async def test_an_expired_code_is_invalid_grant(gw: Bastion, flow: Flow) -> None:
    client_id = await _client(flow)
    pkce = Pkce.new()
    code = await flow.code_for(client_id, pkce)
    async with own_database(gw) as db, db.session(SYSTEM) as session:
        await session.execute(
            update(OAuthCode)
            .where(OAuthCode.code_hash == hash_token(code))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    response = await flow.exchange(client_id, code, pkce)
    assert response.status_code == 400
    _assert_error(response.json(), "invalid_grant", "the authorization code has expired")


async def test_a_code_is_bound_to_its_client_redirect_uri_and_resource(flow: Flow) -> None:
    client_id, other_client = await _client(flow), await _client(flow)
    for overrides, error, description in [
        ({"client_id": other_client}, "invalid_grant", "the authorization code is invalid"),
        ({"redirect_uri": "http://127.0.0.1:33418/other"}, "invalid_grant", "redirect_uri differs"),
        ({"slug": "other"}, "invalid_target", "resource differs from the one this grant is for"),
    ]:
        pkce = Pkce.new()
        code = await flow.code_for(client_id, pkce)
        response = await flow.exchange(client_id, code, pkce, **overrides)
        assert response.status_code == 400, response.text
        _assert_error(response.json(), error, description)


# --- the refresh grant ----------------------------------------------------------------------------


async def test_each_refresh_rotates_the_refresh_token(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens()
    assert tokens.refresh_token
    seen = {tokens.refresh_token}
    refresh_token = tokens.refresh_token
    for _ in range(2):
        response = await flow.refresh(tokens.client_id, refresh_token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["refresh_token"] not in seen
        seen.add(body["refresh_token"])
        refresh_token = body["refresh_token"]
        assert body["scope"] == "mcp"
        assert (await mcp_request(flow.http, gw.mcp_url("demo"), body["access_token"])).status_code == 200


async def test_a_replayed_refresh_token_revokes_the_whole_family(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens()
    assert tokens.refresh_token
    rotated = await flow.refresh(tokens.client_id, tokens.refresh_token)
    newest = rotated.json()
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), newest["access_token"])).status_code == 200
    replay = await flow.refresh(tokens.client_id, tokens.refresh_token)
    assert replay.status_code == 400
    _assert_error(replay.json(), "invalid_grant", "already used; every token of this grant is now revoked")
    refused = await mcp_request(flow.http, gw.mcp_url("demo"), newest["access_token"])
    assert refused.status_code == 401
    assert (await mcp_request(flow.http, gw.mcp_url("demo"), tokens.access_token)).status_code == 401
    honest = await flow.refresh(tokens.client_id, newest["refresh_token"])
    assert honest.status_code == 400
    _assert_error(honest.json(), "invalid_grant", "the refresh token was revoked")


async def test_a_refresh_may_narrow_the_scope_but_not_widen_it(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens(scope="mcp:read mcp:write")
    assert tokens.refresh_token
    narrow = await flow.refresh(tokens.client_id, tokens.refresh_token, scope="mcp:read")
    assert narrow.status_code == 200, narrow.text
    body = narrow.json()
    assert body["scope"] == "mcp:read"
    url = gw.mcp_url("demo")
    write = await mcp_request(
        flow.http, url, body["access_token"], "tools/call", name="create_reorder", arguments={"sku": "WID-001"}
    )
    assert write.status_code == 403 and 'scope="mcp:write"' in write.headers["www-authenticate"]
    # RFC 6749 §6: the refresh token keeps the grant's scope, so the next refresh may ask for it all again.
    full = await flow.refresh(tokens.client_id, body["refresh_token"], scope="mcp:read mcp:write")
    assert full.status_code == 200 and full.json()["scope"] == "mcp:read mcp:write"
    wider = await flow.refresh(tokens.client_id, full.json()["refresh_token"], scope="mcp")
    assert wider.status_code == 400
    _assert_error(wider.json(), "invalid_scope", "scope 'mcp' exceeds what was granted")


async def test_a_refresh_token_presented_by_another_client_is_invalid_grant(flow: Flow) -> None:
    tokens = await flow.tokens()
    assert tokens.refresh_token
    other_client = await _client(flow)
    response = await flow.refresh(other_client, tokens.refresh_token)
    assert response.status_code == 400
    _assert_error(response.json(), "invalid_grant", "the refresh token is invalid")


async def test_a_refresh_for_another_resource_is_invalid_target(gw: Bastion, flow: Flow) -> None:
    tokens = await flow.tokens()
    assert tokens.refresh_token
    response = await flow.refresh(tokens.client_id, tokens.refresh_token, resource=gw.mcp_url("other"))
    assert response.status_code == 400
    _assert_error(response.json(), "invalid_target", "resource differs from the one this grant is for")


# --- lockout ------------------------------------------------------------------------------------


@pytest.fixture
def strict(tmp_path: Path) -> Iterator[Bastion]:
    # The account itself locks at the third failure in a row (before its name closes to this network).
    with run_bastion(tmp_path, lockout_threshold=5, lockout_seconds=600, lockout_account_threshold=3) as bastion:
        publish_demo(bastion, "demo")
        yield bastion


async def test_after_the_threshold_of_failures_even_the_right_password_is_refused_until_the_lock_ends(
    strict: Bastion,
) -> None:
    async with Flow(strict, user_agent="lockout-test-agent/2.0") as flow:
        client_id = await _client(flow)
        login = await flow.http.get(flow.authorize_path(client_id, Pkce.new()))
        assert login.status_code == 200 and 'action="/oauth/login"' in login.text
        for _ in range(3):
            failed = await flow.sign_in(login, password="not-the-password")
            assert failed.status_code == 401
            assert "unknown user or wrong password" in page_message(failed)
        locked = await flow.sign_in(login, password=ADMIN_PASSWORD)
        assert locked.status_code == 401
        assert page_message(locked) == REFUSED  # as a wrong password: no name is told apart
        assert "Allow access?" not in locked.text and "set-cookie" not in locked.headers

        async with own_database(strict) as db:
            async with db.session(SYSTEM) as session:
                user = await session.scalar(select(User).where(User.username == "admin"))
                assert user is not None and user.locked_until is not None
                remaining = user.locked_until - datetime.now(UTC)
                assert timedelta(seconds=590) < remaining <= timedelta(seconds=600)
                user.locked_until = datetime.now(UTC) - timedelta(seconds=1)  # the lock ends
            unlocked = await flow.sign_in(login, password=ADMIN_PASSWORD)
            assert unlocked.status_code == 200 and "Allow access?" in unlocked.text
            async with db.session(SYSTEM) as session:
                events = (
                    await session.scalars(
                        select(LoginEvent)
                        .where(LoginEvent.user_agent == "lockout-test-agent/2.0")
                        .order_by(LoginEvent.created_at)
                    )
                ).all()
    assert [event.outcome for event in events] == ["failure", "failure", "lockout", "locked", "success"]
    assert all(event.ip == "127.0.0.1" and event.username == "admin" and event.user_id for event in events)


# --- resource indicators, without a server ------------------------------------------------------

_SNAPSHOT = Snapshot(
    epoch=1,
    servers={
        "demo": ServerView(id="s1", slug="demo", title="Demo", description="", published=True),
        "draft": ServerView(id="s2", slug="draft", title="Draft", description="", published=False),
    },
    origins={},
    tokens={},
)


@pytest.mark.parametrize(
    "resource",
    [
        "https://MCP.Example.com:8443/servers/demo/mcp",  # as the metadata names it
        "https://mcp.example.com:8443/servers/demo/mcp",
        "HTTPS://mcp.EXAMPLE.com:8443/servers/demo/mcp",
    ],
)
def test_a_resource_matches_whatever_the_case_of_its_scheme_and_host_and_of_the_issuer(resource: str) -> None:
    # An operator may write BASTION_PUBLIC_URL in capitals; clients echo the metadata's resource.
    issuer = "https://MCP.Example.com:8443"
    assert server_for_resource(_SNAPSHOT, issuer, resource).slug == "demo"
    assert server_for_resource(_SNAPSHOT, issuer.lower(), resource).slug == "demo"


@pytest.mark.parametrize(
    "resource",
    [
        "https://mcp.example.com:8443/servers/DEMO/mcp",  # the path is case-sensitive
        "https://mcp.example.com:8443/servers/draft/mcp",
        "https://mcp.example.com:8443/servers/demo/mcp#x",
        "https://mcp.example.com:8443/servers/x/../demo/mcp",
        "https://mcp.example.com:8443@evil.example/servers/demo/mcp",
        "https://mcp.example.com/servers/demo/mcp",  # another port is another origin
    ],
)
def test_any_other_resource_is_invalid_target(resource: str) -> None:
    with pytest.raises(InvalidTarget, match="is not a published virtual server"):
        server_for_resource(_SNAPSHOT, "https://MCP.Example.com:8443", resource)


@pytest.fixture
def throttling(tmp_path: Path) -> Iterator[Bastion]:
    with run_bastion(tmp_path, lockout_threshold=2, lockout_seconds=600) as bastion:
        publish_demo(bastion, "demo")
        yield bastion


async def test_a_name_closed_to_this_network_is_answered_on_the_page_with_retry_after(throttling: Bastion) -> None:
    """Past the attempts one network has at one name, the sign-in page says so and when to retry,
    in Retry-After as the API does."""
    async with Flow(throttling) as flow:
        client_id = await _client(flow)
        login = await flow.http.get(flow.authorize_path(client_id, Pkce.new()))
        for _ in range(2):
            assert (await flow.sign_in(login, password="not-the-password")).status_code == 401
        closed = await flow.sign_in(login, password=ADMIN_PASSWORD)
    assert closed.status_code == 401
    assert "locked for your network after repeated failed logins" in page_message(closed)
    assert 590 < int(closed.headers["retry-after"]) <= 600

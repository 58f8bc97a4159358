"""The sign-in and consent pages: what the browser is told (CSP, cookie) and what the person is shown."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractContextManager

import httpx
import pytest

from tests.harness import Bastion, run_bastion
from tests.oauth.flows import REDIRECT_URI, Flow, Pkce, publish_demo

pytestmark = pytest.mark.anyio

_HANDLER_ATTRIBUTE = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bastion]:
    with run_bastion(tmp_path_factory.mktemp("signin")) as bastion:
        publish_demo(bastion, "demo")
        yield bastion


@pytest.fixture
async def flow(gw: Bastion) -> AsyncIterator[Flow]:
    async with Flow(gw) as person:
        yield person


def _csp(page: httpx.Response) -> dict[str, list[str]]:
    headers = page.headers.get_list("content-security-policy")
    assert len(headers) == 1, headers  # the page's own policy, not also the middleware's default
    directives = [part.split() for part in headers[0].split(";") if part.strip()]
    return {name: values for name, *values in directives}


def _assert_strict(page: httpx.Response) -> dict[str, list[str]]:
    policy = _csp(page)
    assert policy["default-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert "script-src" not in policy  # default-src 'none' covers scripts: none at all
    assert all("'unsafe-inline'" not in values and "'unsafe-eval'" not in values for values in policy.values())
    assert "<script" not in page.text.lower()
    assert not _HANDLER_ATTRIBUTE.search(page.text)
    return policy


async def _login_page(flow: Flow, **metadata: str | list[str]) -> tuple[str, httpx.Response]:
    client_id = str((await flow.register(**metadata))["client_id"])
    redirect_uri = metadata.get("redirect_uris", [REDIRECT_URI])[0]
    page = await flow.http.get(flow.authorize_path(client_id, Pkce.new(), redirect_uri=str(redirect_uri)))
    assert page.status_code == 200 and 'action="/oauth/login"' in page.text, page.text
    return client_id, page


async def test_the_login_page_has_a_strict_csp_and_no_script(flow: Flow) -> None:
    _, page = await _login_page(flow)
    policy = _assert_strict(page)
    # Signing in may answer with the redirect to the client (consent given before), and
    # browsers hold that redirect to form-action too.
    assert policy["form-action"] == ["'self'", "http://127.0.0.1:33418"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


async def test_the_consent_page_has_a_strict_csp_whose_form_action_allows_the_client_origin(flow: Flow) -> None:
    _, login = await _login_page(flow, redirect_uris=["http://127.0.0.1:41000/cb"])
    consent = await flow.sign_in(login)
    assert consent.status_code == 200 and "Allow access?" in consent.text
    policy = _assert_strict(consent)
    assert policy["form-action"] == ["'self'", "http://127.0.0.1:41000"]
    assert policy["style-src"] == ["'self'"]


async def test_a_native_apps_private_use_scheme_is_a_form_action_source(flow: Flow) -> None:
    _, login = await _login_page(flow, redirect_uris=["com.example.app:/oauth/cb"], application_type="native")
    consent = await flow.sign_in(login)
    assert _csp(login)["form-action"] == ["'self'", "com.example.app:"]
    assert _csp(consent)["form-action"] == ["'self'", "com.example.app:"]
    assert "<dt>Returns to</dt><dd><code>com.example.app:</code></dd>" in consent.text  # not an empty host


async def test_the_login_cookie_is_httponly_samesite_lax_and_host_wide(flow: Flow) -> None:
    # Path=/ (not /oauth): under TLS it is a `__Host-` cookie, which must be (see bastion.web.cookies).
    _, login = await _login_page(flow)
    response = await flow.sign_in(login)
    cookies = response.headers.get_list("set-cookie")
    assert len(cookies) == 1, cookies
    name, *attributes = [part.strip() for part in cookies[0].split(";")]
    assert name.startswith("bastion_login=") and len(name) > len("bastion_login=") + 20
    lowered = {attribute.lower() for attribute in attributes}
    assert "httponly" in lowered
    assert "samesite=lax" in lowered
    assert "path=/" in lowered
    assert "max-age=900" in lowered
    assert "secure" not in lowered  # plain-HTTP loopback issuer; an https issuer sets it


async def test_a_failed_sign_in_sets_no_cookie_and_says_why(flow: Flow) -> None:
    _, login = await _login_page(flow)
    failed = await flow.sign_in(login, password="wrong-password")
    assert failed.status_code == 401
    assert "set-cookie" not in failed.headers
    assert "unknown user or wrong password" in failed.text
    _assert_strict(failed)


async def test_the_consent_page_names_the_client_redirect_host_server_and_each_scope(flow: Flow) -> None:
    client_id = str((await flow.register(client_name="Inventory Agent"))["client_id"])
    path = flow.authorize_path(client_id, Pkce.new(), scope="mcp:read mcp:write offline_access")
    consent = await flow.consent_page(path)
    assert consent.status_code == 200
    text = html.unescape(consent.text)
    assert "Inventory Agent" in text and client_id in text
    assert "unverified" in text  # a dynamically registered name is the client's own claim
    assert "127.0.0.1:33418" in text  # where the code goes
    assert "demo" in text and "/servers/demo/mcp" in text
    for scope, meaning in [
        ("mcp:read", "list and read; call read-only tools"),
        ("mcp:write", "call tools that change things"),
        ("offline_access", "refresh tokens"),
    ]:
        assert f"<code>{scope}</code>" in consent.text and meaning in text
    assert "<code>mcp</code>" not in consent.text  # only what was asked for
    assert "Signed in as" in text and "admin" in text


async def test_a_hostile_client_name_is_escaped_on_both_pages(flow: Flow) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    _, login = await _login_page(flow, client_name=hostile)
    consent = await flow.sign_in(login)
    assert consent.status_code == 200
    for page in (login, consent):
        assert "<script" not in page.text.lower() and "<img" not in page.text.lower()
        assert "&lt;script&gt;alert(" in page.text and "&lt;img src=x onerror=alert(1)&gt;" in page.text


def _console_with_provider(
    tmp_path_factory: pytest.TempPathFactory, name: str, issuer: str
) -> AbstractContextManager[Bastion]:
    """A gateway with its console on and one OpenID provider configured at `issuer`."""
    provider = {"name": name, "issuer": issuer, "client_id": "bastion", "client_secret": "s" * 32}
    return run_bastion(
        tmp_path_factory.mktemp(name), oidc_providers=[provider], egress_allow_cidrs=["127.0.0.0/8"], admin_ui=True
    )


def test_a_provider_that_authorizes_on_another_host_than_its_issuer_is_allowed_as_a_form_target(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Browsers apply form-action to the redirect a form's answer makes: "Sign in with …" redirects
    to the provider's authorization endpoint, which its discovery document may put on another host."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    from tests.harness import free_port

    port = free_port()
    issuer = f"http://127.0.0.1:{port}"
    document = {
        "issuer": issuer,
        "authorization_endpoint": "http://localhost:9/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": f"{issuer}/jwks",
    }

    class Discovery(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(document).encode()
            self.send_response(200 if self.path == "/.well-known/openid-configuration" else 404)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Discovery)
    Thread(target=server.serve_forever, daemon=True).start()
    try:
        with _console_with_provider(tmp_path_factory, "corp", issuer) as bastion:
            page = bastion.http.get("/admin/login")
            assert page.status_code == 200 and "Sign in with corp" in page.text
            form_action = _csp(page)["form-action"]
            assert issuer in form_action and "http://localhost:9" in form_action, form_action
    finally:
        server.shutdown()
        server.server_close()


def test_a_provider_that_fails_discovery_is_not_asked_again_by_every_sign_in_page(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Discovery that fails leaves the provider at its issuer, and the next pages do not try again
    for a minute: an identity provider's outage does not slow every sign-in page down."""
    import socket
    from threading import Thread

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    asked: list[int] = []

    def answer_nothing() -> None:  # each connection closed at once: the discovery fetch fails
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            asked.append(1)
            connection.close()

    Thread(target=answer_nothing, daemon=True).start()
    issuer = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        with _console_with_provider(tmp_path_factory, "down", issuer) as bastion:
            counts = []
            for _ in range(3):
                page = bastion.http.get("/admin/login")
                assert page.status_code == 200 and _csp(page)["form-action"] == ["'self'", issuer]
                counts.append(len(asked))
    finally:
        listener.close()
    assert counts[0] >= 1 and counts[1:] == [counts[0], counts[0]], counts  # only the first page asked

"""Every console page: the strict CSP header, no inline script, no inline style, no event handlers.

The browser walk (test_browser_walk.py) watches Chromium for CSP violations on the pages it
visits; this reads the HTML of every page, with data on it, so a template cannot slip one in.
"""

from __future__ import annotations

import re

from tests.console.client import Console
from tests.harness import Bastion, origin_process

_INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
_STYLE_ATTRIBUTE = re.compile(r"<[^>]+\sstyle\s*=", re.IGNORECASE)
_HANDLER = re.compile(r"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
_STYLE_ELEMENT = re.compile(r"<style\b", re.IGNORECASE)
_JS_URL = re.compile(r"(href|src|action)\s*=\s*[\"']?\s*javascript:", re.IGNORECASE)


def _check(path: str, html: str, csp: str) -> None:
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, path
    for pattern in (_INLINE_SCRIPT, _STYLE_ATTRIBUTE, _HANDLER, _STYLE_ELEMENT, _JS_URL):
        found = pattern.search(html)
        assert found is None, f"{path}: {found.group(0) if found else ''}"


def test_every_page_has_the_strict_csp_and_no_inline_script_or_style(gateway: Bastion, console: Console) -> None:
    with origin_process() as inventory:
        gateway.add_origin("inventory", url=inventory)
        gateway.publish_server("demo", {"origin": "inventory"})
        origin_id = gateway.ok("GET", "/api/origins")[0]["id"]
        server_id = gateway.ok("GET", "/api/servers")[0]["id"]
        pages = [
            "/admin",
            "/admin?window=7d",
            "/admin/origins",
            f"/admin/origins/{origin_id}",
            "/admin/servers",
            f"/admin/servers/{server_id}",
            "/admin/users",
            "/admin/tokens",
            "/admin/clients",
            "/admin/policies",
            "/admin/audit",
            "/admin/audit?verify=1",
            "/admin/account",
            "/admin/origins/no-such-origin",  # an error page is a page too
        ]
        for path in pages:
            answer = console.get(path)
            assert answer.status_code in (200, 404), (path, answer.status_code)
            assert answer.headers["cache-control"] == "no-store", path
            _check(path, answer.text, answer.headers["content-security-policy"])
        created = console.post("/admin/tokens", {"name": "t", "scopes": ["mcp"], "servers": ["demo"]})
        _check("token created", created.text, created.headers["content-security-policy"])
    signed_out = gateway.http.get("/admin/login")
    _check("/admin/login", signed_out.text, signed_out.headers["content-security-policy"])
    assert "form-action 'self';" in signed_out.headers["content-security-policy"]  # no provider configured

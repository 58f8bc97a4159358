"""A signed-in browser session against the console, over real HTTP (httpx keeps the cookies).

For page logic and permissions; the walk through the pages in a real browser is
tests/console/test_browser_walk.py.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.harness import ADMIN_PASSWORD, Bastion

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


def inline_errors(html: str) -> list[str]:
    """The messages a page shows next to fields or above a form."""
    return re.findall(r'class="error" role="alert">([^<]*)<', html)


class Console:
    def __init__(self, bastion: Bastion, username: str | None = None, password: str = ADMIN_PASSWORD) -> None:
        self.http = httpx.Client(base_url=bastion.base_url, timeout=30, verify=not bastion.settings.tls)
        form = self.http.get("/admin/login")
        assert form.status_code == 200, form.text
        answer = self.http.post(
            "/admin/login",
            data={
                "username": username or bastion.settings.admin_user,
                "password": password,
                "csrf": csrf_of(form.text),
            },
        )
        assert answer.status_code == 303, (answer.status_code, answer.text)
        # Every signed-in page, even a 403, carries the sign-out form and so the token.
        self.csrf = csrf_of(self.get("/admin", follow_redirects=True).text)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:
        """Post a form with the session's CSRF token (pass csrf= in data to send another)."""
        return self.http.post(path, data={"csrf": self.csrf, **(data or {})}, **kwargs)

    def close(self) -> None:
        self.http.close()

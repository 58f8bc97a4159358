"""A scripted browser for the sign-in and consent pages: what a person does, as HTTP requests."""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx

__all__ = ["Browser", "Redirect", "hidden_field"]


def hidden_field(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no hidden field {name!r} in:\n{page[:2000]}"
    return html.unescape(match.group(1))


@dataclass
class Redirect:
    location: str

    @property
    def params(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.location).query).items()}


class Browser:
    """Keeps cookies like a browser and never follows redirects to the client."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, follow_redirects=False, timeout=30)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def open(self, url: str) -> httpx.Response:
        return await self.http.get(url)

    async def sign_in(self, page: httpx.Response, username: str, password: str) -> httpx.Response:
        form = {"username": username, "password": password, "request": hidden_field(page.text, "request")}
        return await self.http.post("/oauth/login", data=form)

    async def decide(
        self, page: httpx.Response, decision: str = "approve", *, csrf: str | None = None
    ) -> httpx.Response:
        form = {
            "request": hidden_field(page.text, "request"),
            "csrf": hidden_field(page.text, "csrf") if csrf is None else csrf,
            "decision": decision,
        }
        return await self.http.post("/oauth/consent", data=form)

    async def authorize(self, url: str, username: str, password: str) -> Redirect:
        """The whole person-in-the-loop part: open, sign in, allow; the redirect back to the client."""
        page = await self.open(url)
        if page.status_code == 302:
            return Redirect(page.headers["location"])
        assert page.status_code == 200, page.text
        page = await self.sign_in(page, username, password)
        if page.status_code == 302:  # consent given before
            return Redirect(page.headers["location"])
        assert page.status_code == 200 and "Allow access?" in page.text, page.text
        done = await self.decide(page)
        assert done.status_code == 302, done.text
        return Redirect(done.headers["location"])

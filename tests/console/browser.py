"""Playwright driving Debian's Chromium (`/usr/bin/chromium`, installed by `make test` where missing).

Screenshots go to `$BASTION_TEST_ARTIFACTS/console/` (default: ./test-artifacts/console/). Every page
the browser loads is watched for Content-Security-Policy violations and script errors.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

CHROMIUM = Path(os.environ.get("BASTION_TEST_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(os.environ.get("BASTION_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


def require_chromium() -> None:
    reason = None
    if not CHROMIUM.is_file():
        reason = f"no Chromium at {CHROMIUM} (make test installs Debian's chromium package)"
    else:
        try:
            import playwright  # noqa: F401
        except ImportError:
            reason = "the playwright package is not installed (make install-test)"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the browser tests")
        pytest.skip(reason)


class Watched:
    """A browser page, its problems (CSP violations, script errors) and its screenshots."""

    def __init__(self, page: object, folder: Path) -> None:
        from playwright.async_api import ConsoleMessage, Error, Page, Response

        assert isinstance(page, Page)
        self.page = page
        self.folder = folder
        self.problems: list[str] = []
        self.shots: list[Path] = []

        def console(message: ConsoleMessage) -> None:
            # A page answered 403 is logged as a failed load too: the tests check statuses themselves.
            if message.type == "error" and not message.text.startswith("Failed to load resource"):
                self.problems.append(f"{message.text} at {page.url}")  # CSP violations land here

        def failed(error: Error) -> None:
            self.problems.append(f"script error: {error}")

        def answered(response: Response) -> None:
            if response.request.resource_type != "document" and response.status >= 400:
                self.problems.append(f"{response.status} for {response.url}")  # a stylesheet, script, icon

        page.on("console", console)
        page.on("pageerror", failed)
        page.on("response", answered)

    async def shot(self, name: str) -> None:
        path = self.folder / f"{len(self.shots) + 1:02d}-{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)


@asynccontextmanager
async def browser_page(name: str) -> AsyncIterator[Watched]:
    """A fresh Chromium page (laptop-sized); `name` is its screenshots' folder."""
    require_chromium()
    from playwright.async_api import async_playwright

    folder = ARTIFACTS / "console" / name
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    async with async_playwright() as playwright:
        # As root (containers, CI machines) Chromium's sandbox cannot start: it needs --no-sandbox.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=args)
        try:
            context = await browser.new_context(viewport={"width": 1366, "height": 800})
            page = await context.new_page()
            page.on("dialog", lambda dialog: dialog.accept())  # the "Revoke …?" confirmations
            yield Watched(page, folder)
        finally:
            await browser.close()

"""The identity plane's pages: their CSP's form targets are rebuilt from checked parts."""

from __future__ import annotations

import pytest

from bastion.web.pages import csp_source, render


@pytest.mark.parametrize(
    ("target", "source"),
    [
        ("https://Good.Example:8443/cb?x=1", "https://good.example:8443"),
        ("http://127.0.0.1/cb", "http://127.0.0.1"),
        ("http://[::1]:7000/cb", "http://[::1]:7000"),
        ("com.example.app:/cb", "com.example.app:"),
        ("https://attacker.example; frame-ancestors https://attacker.example ;/cb", None),
        ("https://a b.example/cb", None),
        ("https://x.example:99999/cb", None),
        ("https://x.example\\.good.com/cb", None),
    ],
)
def test_a_targets_source_is_its_checked_scheme_host_and_port_or_nothing(target: str, source: str | None) -> None:
    assert csp_source(target) == source


def test_a_redirect_uri_cannot_add_directives_to_a_pages_csp() -> None:
    page = render("error.html", message="x", redirect_to=["https://a.example; frame-ancestors https: ;/cb"])
    csp = page.headers["content-security-policy"]
    assert csp.count("frame-ancestors") == 1 and csp.endswith("frame-ancestors 'none'")
    assert "a.example" not in csp

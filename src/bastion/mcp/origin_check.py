"""`Origin` header validation on MCP endpoints (the spec's DNS-rebinding defense).

A browser page on another site cannot reach a loopback Bastion through the
user's browser: its `Origin` must be on the allowlist. Requests without an
`Origin` header come from non-browser clients and are accepted (they cannot be
steered by a web page).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from bastion.errors import OriginNotAllowed

__all__ = ["OriginPolicy"]


def _scheme_host(origin: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(origin.strip())
        host = parts.hostname
    except ValueError:
        return None
    if not parts.scheme or not host:
        return None
    return parts.scheme.lower(), host.lower()


class OriginPolicy:
    def __init__(self, allowed: list[str], exact: list[str] | None = None) -> None:
        # `allowed` entries are scheme://host, any port of an allowed host accepted; `exact` ones
        # (the CORS origins) are whole origins, compared as the browser sends them.
        self._allowed = {pair for entry in allowed if (pair := _scheme_host(entry)) is not None}
        self._exact = frozenset(exact or ())

    def check(self, origin: str | None) -> None:
        if origin is None or origin in self._exact:
            return
        pair = _scheme_host(origin)
        if pair is None or pair not in self._allowed:
            raise OriginNotAllowed(
                f"Origin {origin[:200]!r} is not allowed: add it to BASTION_ALLOWED_ORIGINS if it is yours"
            )

"""The start-up security posture check: what in the settings weakens Bastion's defaults, each
finding a sentence an operator can act on (`bastion serve` warns, or refuses to start with
BASTION_REQUIRE_STRONG_SECRETS; the support bundle lists them)."""

from __future__ import annotations

import ipaddress
import math
import string
from collections import Counter
from itertools import pairwise

from bastion.config import Settings

__all__ = ["posture_findings"]

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _entropy_bits(secret: str) -> float:
    """Shannon entropy of the string times its length: a rough strength estimate."""
    if not secret:
        return 0.0
    counts = Counter(secret)
    per_char = -sum(n / len(secret) * math.log2(n / len(secret)) for n in counts.values())
    return per_char * len(secret)


_WEAK_PASSWORDS = {"admin", "password", "changeme", "secret", "bastion", "123456", "letmein"}
# Words and runs a guesser tries first, found anywhere in a password ("Admin@1234567").
_GUESSED_PARTS = (*_WEAK_PASSWORDS, "qwerty", "asdf", "zxcv", "1234", "abcd", "pass", "welcome")
_RUN = 5  # this many characters in a row, each the one after the last (abcde, 56789, 98765)


def _guessable(password: str, username: str) -> bool:
    lowered = password.lower()
    # The user's name counts when it is a word (three or more), not a letter any password may hold.
    named = (username.lower(),) if len(username) >= 3 else ()
    if any(part in lowered for part in (*_GUESSED_PARTS, *named)):
        return True
    run, previous = 1, 0
    for a, b in pairwise(lowered):
        step = ord(b) - ord(a)
        if step not in (1, -1):
            run = 1
        else:
            run = run + 1 if step == previous else 2
        previous = step
        if run >= _RUN:
            return True
    return False


def posture_findings(settings: Settings) -> list[str]:
    """Start-up security posture check: each finding is a sentence an operator can act on."""
    findings: list[str] = []
    if settings.host not in _LOOPBACK and not settings.tls:
        findings.append(
            f"binding {settings.host} (not loopback) without TLS: set BASTION_SSL_CERTFILE and "
            "BASTION_SSL_KEYFILE, or bind 127.0.0.1 behind a TLS-terminating proxy"
        )
    password = settings.admin_password
    if password is not None:
        lowered = password.lower()
        if lowered in _WEAK_PASSWORDS or _guessable(password, settings.admin_user):
            findings.append(
                "BASTION_ADMIN_PASSWORD is a default or guessable value (a common word, the user name or a "
                "run such as 12345 or abcde in it): choose a random one"
            )
        elif len(password) < 12 or _entropy_bits(password) < 48:
            findings.append(
                "BASTION_ADMIN_PASSWORD is short or low-entropy (need >= 12 characters, ~48 bits): "
                "use a generated password"
            )
        elif set(password) <= set(string.digits):
            findings.append("BASTION_ADMIN_PASSWORD is digits only: use a generated password")
    if not settings.pipeline:
        findings.append(
            "the policy pipeline is off (BASTION_PIPELINE=false): no rate limits, approvals, DLP "
            "or response checks; turn it back on outside benchmarks"
        )
    if settings.trusted_proxies and not settings.base_url().startswith("https://"):
        findings.append(
            "behind a proxy (BASTION_TRUSTED_PROXIES) with a public URL that is not https: browser cookies go "
            "without Secure and the OAuth metadata names http endpoints; set BASTION_PUBLIC_URL=https://..."
        )
    if "*" in settings.allowed_origins:  # (a wildcard CORS entry stops the start)
        findings.append("a wildcard Origin allowlist disables DNS-rebinding protection: list origins")
    if _everything(settings.trusted_proxies):
        findings.append(
            "BASTION_TRUSTED_PROXIES trusts every address (a /0 network): any client writes its own "
            "X-Forwarded-For and picks the address its rate limits and token networks see; list the proxies"
        )
    if _everything(settings.egress_allow_cidrs):
        findings.append(
            "BASTION_EGRESS_ALLOW_CIDRS allows every address (a /0 network): origin URLs and fetched documents "
            "may reach loopback, private networks and cloud metadata services; list the ranges origins live in"
        )
    return findings


def _everything(cidrs: list[str]) -> bool:
    return any(ipaddress.ip_network(cidr, strict=False).prefixlen == 0 for cidr in cidrs)

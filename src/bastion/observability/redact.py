"""Secrets out of free text: log lines and error messages that leave the machine in a support bundle.

Hand-written rather than a library: the secret scanners (detect-secrets, trufflehog, gitleaks)
find secrets in files to report them, with entropy heuristics that would also eat the ids,
digests and paths support needs; none rewrites a line in place, and none knows Bastion's own
token format. What is removed, in this order:

- PEM private key blocks (also cut-off ones, to the end of the text);
- JWTs (and JWEs): three to five base64url parts, the first a JSON header (`eyJ`);
- Bastion's own secrets, all `bst_` + base64url (API tokens, access and refresh tokens, client
  secrets: `bastion.identity.tokens`);
- credentials after an HTTP authentication scheme (`Bearer`, `Basic`, `DPoP`), and whole
  `Authorization:` / `Cookie:` / `Set-Cookie:` header values;
- the password of a URL (`scheme://user:password@host`; user, host and path stay);
- the value of a JSON field, `name=value`, `--name=value` or `name: value` whose name looks
  secret (`looks_secret`: password, secret, token, key, authorization, cookie, credential,
  private, dsn...), and OAuth's `code` query parameter.

Kept on purpose: ids, paths, tool names, key ids (`kid`), public keys, and 64-hex-digit SHA-256
digests (audit argument digests, token hashes): a digest of a 256-bit secret gives nothing away
and is what support matches records by. A name that only describes a secret keeps its value
(`token_ttl_seconds`, `key_id`, `token_hash`). Over-redacting an ordinary value is the accepted
cost of a name that looks secret (`missing key: foo` loses its foo).
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["REDACTED", "looks_secret", "redact_text", "redact_url"]

REDACTED = "<redacted>"

_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pwd", "passphrase", "secret", "token", "apikey", "authorization",
        "cookie", "credential", "key", "assertion", "verifier", "signature", "private", "dsn",
    }
)  # fmt: skip
_LONG_SECRET_WORDS = tuple(word for word in _SECRET_WORDS if len(word) >= 6)
# A name ending in one of these describes a secret without holding it (`token_ttl`, `key_id`).
_HARMLESS_ENDINGS = frozenset(
    {"id", "ids", "kid", "ttl", "seconds", "count", "type", "name", "hash", "digest", "prefix", "length", "hint"}
)
_NAME_PARTS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def looks_secret(name: str) -> bool:
    """Whether a field or parameter called `name` probably holds a secret (`api_key`, `X-Auth-Token`...)."""
    parts = [part.lower() for part in _NAME_PARTS.findall(name)]
    if not parts or parts[-1] in _HARMLESS_ENDINGS or "public" in parts:
        return False
    words = {"".join(parts), *parts}
    if any(word in _SECRET_WORDS or word.removesuffix("s") in _SECRET_WORDS for word in words):
        return True
    # Run together with a prefix (`sslpassword`, `dbpasswd`): only the longer words, so `monkey` stays.
    return any(part.removesuffix("s").endswith(_LONG_SECRET_WORDS) for part in parts)


_PEM = re.compile(
    r"-----BEGIN (?P<kind>[A-Z0-9 ]*)PRIVATE KEY-----.*?(?:-----END (?P=kind)PRIVATE KEY-----|\Z)", re.DOTALL
)
_JWT = re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){2,4}")
_BASTION_SECRET = re.compile(r"(?<![A-Za-z0-9])bst_[A-Za-z0-9_-]{8,}")
_AUTH_SCHEME = re.compile(r"(?i)\b(?P<scheme>Bearer|Basic|DPoP)(?P<gap>\s+)[A-Za-z0-9._~+/-]{8,}=*")
# The password runs to the first "@", slashes and quotes included, as SQLAlchemy's URL parser
# reads it (`[^@]*`); in free text, also to the first blank. A URL given alone (`redact_url`) is
# read exactly as SQLAlchemy reads it.
_URL_PASSWORD = re.compile(r"(?i)\b(?P<head>[a-z][a-z0-9+.-]*://[^\s/:@\"'<>]*:)[^\s@]+(?=@)")
_WHOLE_URL_PASSWORD = re.compile(r"(?i)^(?P<head>[a-z][a-z0-9+.-]*://[^:/@]*:)[^@]*(?=@)")
_HEADER = re.compile(r"(?i)(?P<head>\b(?:proxy-)?(?:authorization|set-cookie|cookie)\s*:\s*)[^\"'\\\r\n]+")
# "name": value in JSON, and in JSON inside a JSON string (\"name\": \"value\"), whose value
# runs to a closing \" before a delimiter: an escaped quote inside it does not end it early.
# A flat array or object is one value (a private JWK); deeper ones are searched inside.
_JSON_FIELD = re.compile(
    r"(?P<q>\\?\")(?P<name>[A-Za-z0-9_.-]+)(?P=q)\s*:\s*"
    r"(?P<value>\\\".*?\\\"(?=\s*[,}\]]|$)|\"(?:[^\"\\]|\\.)*\"|\[[^\[\]{}]*\]|\{[^{}]*\}|[^\s,}\]\[{]+)"
)
# name=value, `name: value`, --name=value; a value stops at a backslash-escaped quote (JSON around it).
_PAIR = re.compile(
    r"(?<![A-Za-z0-9_.])(?P<name>[A-Za-z][A-Za-z0-9_.-]*)\s*(?:=|:\s)\s*"
    r"(?P<value>'[^']*'|(?:[^\s,;&\"'}\]\\]|\\[^\"])+)"
)
_CODE_PARAMETER = re.compile(r"(?P<head>[?&]code=)[^&\s\"'#]+")  # RFC 6749 §4.1.2: the authorization code
_LITERALS = frozenset({"null", "true", "false", "None", "''", REDACTED, f'"{REDACTED}"', f'\\"{REDACTED}\\"'})


def redact_text(text: str) -> str:
    """`text` with every secret the module docstring lists replaced by `<redacted>`."""
    text = _PEM.sub(lambda m: f"-----BEGIN {m['kind']}PRIVATE KEY-----{REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _BASTION_SECRET.sub(REDACTED, text)
    text = _AUTH_SCHEME.sub(lambda m: f"{m['scheme']}{m['gap']}{REDACTED}", text)
    text = _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    text = _HEADER.sub(lambda m: m["head"] + REDACTED, text)
    text = _redact_values(_JSON_FIELD, text)
    text = _redact_values(_PAIR, text)
    return _CODE_PARAMETER.sub(lambda m: m["head"] + REDACTED, text)


def redact_url(url: str) -> str:
    """`url` with its password and secret-looking query parameters redacted; scheme, user, host,
    port and path (a database's name) kept. Edited in place, not re-encoded: what support reads is
    what the operator wrote."""
    url = _WHOLE_URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, url)
    base, question, rest = url.partition("?")
    if not question:
        return url
    query, hash_, fragment = rest.partition("#")
    pairs = []
    for pair in query.split("&"):
        name, equals, _value = pair.partition("=")
        pairs.append(f"{name}={REDACTED}" if equals and looks_secret(unquote(name)) else pair)
    return f"{base}?{'&'.join(pairs)}{hash_}{fragment}"


def _redact_values(pattern: re.Pattern[str], text: str) -> str:
    """Replace the `value` group of each match whose `name` looks secret. After any other match
    the search resumes at its value, not past it: `"event": "failed: password=x"` holds a pair."""
    out: list[str] = []
    position = 0
    while (match := pattern.search(text, position)) is not None:
        value = match["value"]
        if looks_secret(match["name"]) and value not in _LITERALS:
            quote = match["q"] if "q" in pattern.groupindex else ""  # JSON stays JSON: a string in place
            out.append(text[position : match.start("value")] + quote + REDACTED + quote)
            position = match.end()
        else:
            out.append(text[position : match.start("value")])
            position = match.start("value")
    out.append(text[position:])
    return "".join(out)

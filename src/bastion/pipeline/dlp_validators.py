"""The checks behind the DLP detectors: check digits, country tables and shape rules.

A regex only finds candidates; these functions decide whether a candidate really is the thing
(a card number whose Luhn digit holds, an IBAN whose mod-97 is 1, a token that is random rather
than a long identifier). Pure functions over the matched text, stdlib only: they run on every
candidate on the hot path, so each one rejects as early and as cheaply as it can.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import re
from collections import Counter

__all__ = [
    "api_token_valid",
    "card_valid",
    "email_valid",
    "high_entropy_valid",
    "iban_valid",
    "ip_valid",
    "jwt_valid",
    "luhn_valid",
    "national_id_valid",
    "path_segments",
    "phone_valid",
    "public_key_spans",
    "shannon_entropy",
    "ssn_valid",
]

# IBAN length per country (ISO 13616 registry): the length is the first and cheapest check.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}  # fmt: skip

_SEPARATORS = str.maketrans("", "", " -")
_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
# UK National Insurance prefixes HMRC never issues (the per-letter rules are in the regex).
_NINO_BAD_PREFIXES = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})
# "icon@2x.png" is an asset name, not an address: these endings are file types, not TLDs people mail.
_FILE_ENDINGS = frozenset({"png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "tif", "tiff", "avif"})
# National significant number lengths of common country codes: "+1 415 555 0132 4111" is a US number
# followed by something else, not a 14-digit US number. Other codes get E.164's 8-15 digits.
_PHONE_NATIONAL_DIGITS: dict[str, tuple[int, int]] = {
    "1": (10, 10), "7": (10, 10), "27": (9, 9), "31": (9, 9), "32": (8, 9), "33": (9, 9), "34": (9, 9),
    "39": (6, 11), "41": (9, 9), "44": (9, 10), "49": (6, 12), "52": (10, 10), "55": (10, 11), "61": (9, 9),
    "65": (8, 8), "81": (9, 10), "86": (9, 11), "91": (10, 10), "353": (7, 9),
}  # fmt: skip
_HEX = frozenset("0123456789abcdefABCDEF-")
_WORD_SEGMENT = re.compile(r"[a-z]{3,}\d*")
_DIGEST_PREFIX = re.compile(r"sha(?:1|224|256|384|512)-")  # Subresource Integrity: a public hash

# Measured on 5,000 random tokens per length and on the corpus (bench/dlp_corpus.py). Random
# base62/base64 strings of 32+ chars carry 4.0-5.5 bits per character, and their runs of one kind
# ("Ab", "7", "XQ") average about 1.9 characters: 3.0 or more in under 1 in 150 at 32 characters,
# fewer when longer. Identifiers (camelCase, snake_case, Title-Slugs, "ABC...xyz0123") are made of
# words, so their runs average 3.2 or more, while their entropy is as high as a token's.
ENTROPY_BITS = 3.8
WORDY_RUN_LENGTH = 3.0
_RUNS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+|\d+")  # a capitalised word is one run, separators are none


def luhn_valid(number: str) -> bool:
    """The Luhn check digit of `number` (digits, spaces and dashes allowed) holds."""
    digits = number.translate(_SEPARATORS)
    if not digits.isdigit() or not digits.isascii():
        return False
    total = 0
    for i, char in enumerate(reversed(digits)):
        d = ord(char) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_brand_length_ok(digits: str) -> bool:
    # Networks and lengths they issue: prefix checks cut the 1-in-10 Luhn collisions of other numbers.
    n = len(digits)
    if digits[0] == "4":
        return n in (13, 16, 19)
    if digits[:2] in ("34", "37"):
        return n == 15
    if "51" <= digits[:2] <= "55" or "2221" <= digits[:4] <= "2720":
        return n == 16
    if digits[:2] in ("36", "38") or "300" <= digits[:3] <= "305":
        return 14 <= n <= 19
    if "3528" <= digits[:4] <= "3589" or digits[0] == "6":
        return 16 <= n <= 19
    return False


def card_valid(candidate: str) -> bool:
    """A payment card number (the detector's regex vouches for its grouping): known network prefix
    and length, and the Luhn digit."""
    digits = candidate.translate(_SEPARATORS)
    return 13 <= len(digits) <= 19 and _card_brand_length_ok(digits) and luhn_valid(digits)


def iban_valid(candidate: str) -> bool:
    """An IBAN (spaces allowed): known country, that country's length, and mod 97 == 1."""
    compact = candidate.replace(" ", "").upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum() or not compact.isascii():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def email_valid(candidate: str) -> bool:
    local, _, domain = candidate.rpartition("@")
    if len(local) > 64 or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return domain.rsplit(".", 1)[-1].lower() not in _FILE_ENDINGS


def phone_valid(candidate: str) -> bool:
    """Digit count fits the form: E.164 for `+` numbers (the country's own length where known), a
    national number otherwise."""
    if candidate.count("(") != candidate.count(")"):
        return False
    if not candidate.startswith("+"):
        return 10 <= sum(c.isdigit() for c in candidate) <= 12
    digits = "".join(c for c in candidate.replace("(0)", "") if c.isdigit())  # "+44 (0)20": the 0 is not dialled
    if not (10 if candidate[1:].isdigit() else 8) <= len(digits) <= 15:
        return False
    for size in (3, 2, 1):  # country codes are prefix-free: at most one of these is one
        national = _PHONE_NATIONAL_DIGITS.get(digits[:size])
        if national is not None:
            return national[0] <= len(digits) - size <= national[1]
    return True


def ssn_valid(candidate: str) -> bool:
    """A dashed US SSN the SSA could have issued: area not 000, 666 or 9xx, group not 00, serial not 0000."""
    area, group, serial = candidate.split("-")
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def national_id_valid(candidate: str) -> bool:
    """UK NINO (issued prefixes), Spanish DNI/NIE (check letter) or French NIR (mod-97 key)."""
    compact = candidate.translate(_SEPARATORS)
    if len(compact) == 9 and compact[0].isalpha() and compact[1].isalpha():
        return compact[:2] not in _NINO_BAD_PREFIXES
    if len(compact) == 9 and compact[-1].isalpha():
        number = compact[:-1]
        if number[0] in "XYZ":
            number = str("XYZ".index(number[0])) + number[1:]
        return number.isdigit() and _DNI_LETTERS[int(number) % 23] == compact[-1]
    if len(compact) == 15:
        # Corsica's departments 2A and 2B count as 19 and 18 for the key.
        body = compact[:13].replace("2A", "19", 1).replace("2B", "18", 1)
        return body.isdigit() and 97 - int(body) % 97 == int(compact[13:])
    return False


def ip_valid(candidate: str) -> bool:
    if ":" in candidate and not any(c.isdigit() for c in candidate):
        return False  # "dead::beef" parses, but text without a digit is a C++/Ruby scope, not an address
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _b64url_json(segment: str) -> object:
    if len(segment) > 4096:  # a JOSE header is a few dozen bytes; this one is something else
        return None
    padded = segment.rstrip("=") + "=" * (-len(segment.rstrip("=")) % 4)
    try:
        return json.loads(base64.urlsafe_b64decode(padded))
    # JSONDecodeError and UnicodeDecodeError are ValueErrors; "[[[[..." nested deep enough recurses out.
    except (binascii.Error, ValueError, RecursionError):
        return None


def jwt_valid(candidate: str) -> bool:
    """Three segments whose header is a JSON object naming its `alg`."""
    header = _b64url_json(candidate.split(".", 1)[0])
    return isinstance(header, dict) and isinstance(header.get("alg"), str)


def api_token_valid(candidate: str) -> bool:
    if candidate.startswith("sk-"):
        # OpenAI keys mix cases and digits; "sk-" + a long kebab-case phrase does not.
        body = candidate[3:]
        return any(c.isupper() for c in body) and any(c.islower() for c in body) and any(c.isdigit() for c in body)
    return True


def shannon_entropy(text: str) -> float:
    """Bits per character of `text`'s own character distribution."""
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values()) if n else 0.0


def _mean_run_length(text: str) -> float:
    # Capped, so one real word inside a random key (AWS's "...EXAMPLEKEY") does not outweigh the rest.
    runs = _RUNS.findall(text)
    return sum(min(len(run), 6) for run in runs) / len(runs) if runs else 0.0


def high_entropy_valid(candidate: str) -> bool:
    """A random-looking base64/base64url string: not hex, mixes cases and digits, high entropy, no words.

    Hex-only strings (git SHAs, digests, UUIDs) are excluded on purpose: they are public identifiers
    in nearly every tool output, and hex secrets with a known prefix are `api_token`'s job.
    """
    token = candidate.rstrip("=")
    if len(token) < 32 or _HEX.issuperset(token) or _DIGEST_PREFIX.match(token):
        return False
    if not (any(c.isupper() for c in token) and any(c.islower() for c in token) and any(c.isdigit() for c in token)):
        return False
    return shannon_entropy(token) >= ENTROPY_BITS and _mean_run_length(token) < WORDY_RUN_LENGTH


def path_segments(candidate: str) -> list[tuple[int, int]] | None:
    """Spans of the parts of a path-like candidate ("/var/lib/<id>/merged"), or None if it is not one.

    A `/` is also a base64 character, so a candidate is a path only when a part is a plain word.
    """
    if "/" not in candidate:
        return None
    parts = candidate.split("/")
    if not any(_WORD_SEGMENT.fullmatch(p) for p in parts):
        return None
    spans, at = [], 0
    for part in parts:
        spans.append((at, at + len(part)))
        at += len(part) + 1
    return spans


# Certificates, public keys and SSH public keys are random-looking by nature and public by design.
_PUBLIC_KEY_MATERIAL = re.compile(
    r"-----BEGIN (?!(?:[A-Z0-9]+ )*PRIVATE KEY)(?P<kind>[A-Z0-9 ]{1,40})-----[^-]*(?:-(?!----)[^-]*)*"
    r"-----END (?P=kind)-----"
    r"|(?<![\w-])(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp(?:256|384|521)) [A-Za-z0-9+/]+={0,2}"
)


def public_key_spans(text: str) -> list[tuple[int, int]]:
    """Where `text` holds public key material, which high_entropy leaves alone."""
    if "-----BEGIN " not in text and "ssh-" not in text and "ecdsa-" not in text:
        return []
    return [m.span() for m in _PUBLIC_KEY_MATERIAL.finditer(text)]

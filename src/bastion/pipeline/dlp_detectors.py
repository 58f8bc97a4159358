"""The baseline DLP detectors: what counts as personal data or a secret in a string, and where.

Each detector finds candidates with a precompiled regex and confirms them with a check from
`dlp_validators` (Luhn, mod-97, check letters, `ipaddress`, a JWT header). Hand-written on purpose:
no well-kept library does these validated detectors in-process at hot-path cost (the known ones are
ML services or out-of-process scanners), and `re` + `ipaddress` are stdlib. The patterns stay
linear on hostile input: a value may start only where a boundary check allows (one start per run
of token characters), quantifiers are bounded or cannot split the same text two ways, and
possessive ones never give back what cannot end a match.

`find_all` merges the findings of several detectors into non-overlapping spans sorted by start,
so callers can replace them right to left.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import re2  # type: ignore[import-untyped]

from bastion.pipeline.dlp_validators import (
    api_token_valid,
    card_valid,
    email_valid,
    high_entropy_valid,
    iban_valid,
    ip_valid,
    jwt_valid,
    luhn_valid,
    national_id_valid,
    path_segments,
    phone_valid,
    public_key_spans,
    ssn_valid,
)

__all__ = [
    "BASELINE", "MARK", "AnyOf", "Detector", "Finding", "LinearDetector", "RegexDetector", "find_all", "iban_valid",
    "linear_pattern",
    "luhn_valid",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class Finding:
    detector: str  # detector name, e.g. "email"
    start: int  # offsets into the scanned text
    end: int
    value: str  # the matched text (callers never log or audit it)


class Detector(Protocol):
    # Read-only, so frozen dataclasses qualify; a plain `name = "..."` class attribute does too.
    @property
    def name(self) -> str: ...

    def find(self, text: str) -> Iterable[Finding]: ...


_MAX_TRIMS = 6  # a phone number's groups: enough for what follows a value, and a bound on hostile input


class Pattern(Protocol):
    """What `RegexDetector` needs of a compiled pattern: Python's `re`, or RE2's (`linear_pattern`)."""

    def search(self, string: str, pos: int = ..., /) -> Any: ...

    def finditer(self, string: str, /) -> Iterator[Any]: ...


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the caller's error, not a line in Bastion's log


def linear_pattern(pattern: str) -> Pattern:
    r"""A pattern someone other than Bastion wrote (a tenant's custom detector), compiled with RE2:
    matching takes time linear in the text, whatever the pattern. Python's backtracking engine
    would run `(\w+\s?)+$` over 40 characters for minutes, on the event loop every tenant shares.
    ValueError, in RE2's words, for what RE2 does not take (backreferences, lookaround)."""
    try:
        compiled: Pattern = re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise ValueError(
            f"the pattern does not compile as RE2 (linear-time: no backreferences or lookaround): {reason}"
        ) from None
    if compiled.search("") is not None:
        raise ValueError("the pattern matches empty text: give it at least one character it must find")
    return compiled


@dataclass(frozen=True, slots=True)
class LinearDetector:
    """A tenant's custom detector (`linear_pattern`): every match, in one scan of the text. One
    `finditer`, not `RegexDetector`'s search from each position: RE2 re-reads a `str` up to the
    position it is given on every search, which made that loop quadratic (8.6 s over 140 kB)."""

    name: str
    pattern: Pattern

    def find(self, text: str) -> Iterator[Finding]:
        for match in self.pattern.finditer(text):
            start, end = match.span()
            if start < end:
                yield Finding(self.name, start, end, text[start:end])


@dataclass(frozen=True, slots=True)
class RegexDetector:
    """Matches of `pattern` (its `group`), kept when `validate` accepts them.

    `precheck` skips the regex when a cheap test on the whole text rules every match out. When
    `validate` rejects a match, `trim` names separators at which the match is cut from the right
    and re-checked ("4111 1111 1111 1111 12/26" is a card followed by an expiry month).
    `needs_mark`: every match holds a digit, ":" or "@" (`MARK`), so `find_all` skips the detector
    for a text without one, after a single scan shared by all such detectors.
    """

    name: str
    pattern: Pattern
    validate: Callable[[str], bool] | None = None
    group: int = 0
    precheck: Callable[[str], bool] | None = None
    trim: str = ""
    needs_mark: bool = False

    def find(self, text: str) -> Iterator[Finding]:
        if self.precheck is not None and not self.precheck(text):
            return
        pos, size = 0, len(text)
        while pos <= size:
            match = self.pattern.search(text, pos)
            if match is None:
                return
            start, end = match.span(self.group)
            if start < 0 or start == end:  # the group did not take part, or an empty match
                pos = max(match.end(), match.start() + 1)
                continue
            accepted = self._accepted_end(text, start, end)
            if accepted is None:
                pos = match.start() + 1  # a rejected long match may hide a good one inside it
                continue
            yield Finding(self.name, start, accepted, text[start:accepted])
            pos = max(accepted, match.start() + 1)

    def _accepted_end(self, text: str, start: int, end: int) -> int | None:
        if self.validate is None:
            return end
        for _ in range(_MAX_TRIMS + 1):
            if self.validate(text[start:end]):
                return end
            cut = max((text.rfind(sep, start, end) for sep in self.trim), default=-1)
            if cut <= start:
                return None
            end = cut
            while end > start and text[end - 1] in self.trim:
                end -= 1
        return None


@dataclass(frozen=True, slots=True)
class HighEntropyDetector:
    """Random-looking base64 strings that no specific detector claims.

    `fallback` tells `find_all` to drop its findings where any other detector found something, so a
    JWT or a GitHub token is reported once, under its own name. Paths are checked part by part.
    """

    name: str = "high_entropy"
    fallback: bool = True
    pattern: re.Pattern[str] = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}+={0,2}(?![A-Za-z0-9+/_=-])")

    def find(self, text: str) -> Iterator[Finding]:
        if len(text) < 32 or max(map(len, text.split()), default=0) < 32:  # C-level split: no long word, no token
            return
        public = public_key_spans(text)
        for match in self.pattern.finditer(text):
            value, start = match.group(), match.start()
            if public and any(a <= start < b for a, b in public):
                continue
            parts = path_segments(value)
            for a, b in parts if parts is not None else [(0, len(value))]:
                if b - a >= 32 and high_entropy_valid(value[a:b]):
                    yield Finding(self.name, start + a, start + b, value[a:b])


def _ipv6_possible(text: str) -> bool:
    return "::" in text or _IPV6_HINT.search(text) is not None


@dataclass(frozen=True, slots=True)
class AnyOf:
    """One detector made of several under the same name (IPv4 and IPv6), each with its own precheck."""

    name: str
    parts: tuple[Detector, ...]
    needs_mark: bool = False  # as `RegexDetector.needs_mark`, true only when it is for every part

    def find(self, text: str) -> Iterator[Finding]:
        for part in self.parts:
            yield from part.find(text)


def _contains_any(*needles: str) -> Callable[[str], bool]:
    # `in` is a C fast search, ~0.5 µs per needle on 2 KB. Counting digits instead costs as much as the
    # digit-led patterns' own scan, so those have no precheck: their leading class is one.
    if len(needles) == 1:
        (needle,) = needles
        return lambda text: needle in text

    def check(text: str) -> bool:
        for needle in needles:  # a loop, not any(<generator>): this runs for every string of every call
            if needle in text:
                return True
        return False

    return check


# The first alternative swallows URL credentials ("https://user:token@host", "https://token@host") so
# they are not read as an address; only the second one fills group 1, the finding.
_EMAIL = re.compile(
    r"//[^\s/@]{1,256}@"
    r"|(?<![\w.%+-])([A-Za-z0-9._%+-]{1,64}+@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24})"
    r"(?![\w-]|\.[A-Za-z0-9])"
)

# Most patterns below open with a character class and check what precedes it with a two-character
# lookbehind right after (`\d(?<![\w-]\d)`), instead of a lookbehind first: a leading class lets the
# engine skip in C to the few characters a value can start with (3-4x faster on prose). Where the
# alternatives differ by their first character, a one-character lookbehind picks the alternative.

# Separators between digit groups are mandatory (or the form is compact), so no two ways of
# splitting the same digits exist and the engine never backtracks over them.
_PHONE = re.compile(
    r"[+(\d](?<![\w+][+(\d])(?<![.,/-][(\d])(?:"
    r"(?<=\+)[1-9]\d{0,14}(?:(?:[ .-]\(?|\)[ .-]?|\()\d{1,14}){0,6}"  # international, E.164-like
    r"|(?<=1)[ .-](?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])[2-9]\d{2}[ .-]\d{4}"  # North America: 1-415-555-0132
    r"|(?<=[2-9])\d{2}[ .-][2-9]\d{2}[ .-]\d{4}"  # 415-555-0132
    r"|(?<=\()(?:[2-9]\d{2}\) ?[2-9]\d{2}[ .-]\d{4}|0\d{2}\) \d{4} \d{4}|0\d{3}\) \d{3} \d{4}|0\d{4}\) \d{6})"
    r"|(?<=0)(?:\d{2} \d{4} \d{4}|\d{3} \d{3} \d{4}|\d{4} \d{6}"  # UK: 020 7946 0958, 0161 496 0123
    r"|[1-9](?:[ .-]\d{2}){4}"  # France: 01 23 45 67 89
    r"|[1-9]\d{1,3}[ /]\d{4,8})"  # area code + subscriber (Germany and similar): 030 12345678
    r")(?!\w|[.,/-]\d)"
)

# Every network's numbers start with 2-6. Printed forms: compact, fours with one separator kind
# (the last group may be short: 13 and 17-19 digits), or Amex/Diners 4-6-5 and 4-6-4.
_CARD = re.compile(
    r"[2-6](?<![\w.,+-][2-6])(?:\d{12,18}|\d{3}([ -])\d{4}(?:\1\d{4}){1,2}(?:\1\d{1,4})?|\d{3}([ -])\d{6}\2\d{4,5})"
    r"(?![\w-]|[.,]\d)"
)

# Compact, or printed in groups of four (ISO 13616) with a short last group.
_IBAN = re.compile(
    r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)"
    r"(?![A-Za-z0-9])"
)

_US_SSN = re.compile(r"\d(?<![\w-]\d)\d{2}-\d{2}-\d{4}(?![\w-]|\.\d)")  # dashed only: bare 9 digits are anything

_NATIONAL_ID = re.compile(
    r"[A-Z\d](?<![\w-][A-Z\d])(?:"
    r"(?<=[A-CEGHJ-PR-TW-Z])[A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]"  # UK National Insurance number
    r"|(?<=\d)\d{7}-?[A-Z]|(?<=[XYZ])-?\d{7}-?[A-Z]"  # Spanish DNI and NIE
    r"|(?<=[12]) ?\d{2} ?(?:0[1-9]|1[0-2]|[2-9]\d) ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}"  # French NIR
    r")(?![\w-])"
)

_IPV4 = re.compile(r"\d(?<![\w.:]\d)\d{0,2}\.(?:\d{1,3}\.){2}\d{1,3}(?!\w|\.\d)")  # perhaps followed by :port
# An IPv6 address has "::" or all eight groups; times ("10:30:45") and MACs have fewer colons.
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:[0-9A-Fa-f]{1,4}:")
_IPV6 = re.compile(
    r"[0-9A-Fa-f:](?<![\w.:][0-9A-Fa-f:])(?:(?<=:)|(?<=[0-9A-Fa-f])[0-9A-Fa-f]{0,3}:)(?:[0-9A-Fa-f]{0,4}:){1,6}"
    r"(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)"
)

_AWS_ACCESS_KEY = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Za-z0-9])")

# The body runs to the next "-----" (its END line, or the next BEGIN when the key was cut off: a
# truncated key still leaks), so each BEGIN scans only its own block.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN (?P<kind>(?:[A-Z0-9]+ )*)PRIVATE KEY(?P<block>(?: BLOCK)?)-----"
    r"[^-]*(?:-(?!----)[^-]*)*(?:-----END (?P=kind)PRIVATE KEY(?P=block)-----)?"
)

_JWT = re.compile(r"eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{2,}+\.[A-Za-z0-9_-]++\.[A-Za-z0-9_-]*+(?![\w-]|\.[\w-])")

# Each alternative opens with its literal prefix, so the engine skips to the prefixes' first letters.
_API_TOKEN = re.compile(
    r"(?:gh[pousr]_(?<![\w-]gh._)[A-Za-z0-9]{36}|github_pat_(?<![\w-]github_pat_)[A-Za-z0-9]{22}_[A-Za-z0-9]{59}"
    r"|xox[bpa]-(?<![\w-]xox.-)\d+(?:-\d+){0,3}-[0-9A-Za-z]{10,}"  # Slack
    r"|sk_live_(?<![\w-]sk_live_)[A-Za-z0-9]{24,}+|rk_live_(?<![\w-]rk_live_)[A-Za-z0-9]{24,}+"  # Stripe
    r"|sk-(?<![\w-]sk-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{32,}+"  # OpenAI
    r"|AIza(?<![\w-]AIza)[0-9A-Za-z_-]{35}"  # Google API key
    r"|glpat-(?<![\w-]glpat-)[0-9A-Za-z_-]{20}"  # GitLab personal access token
    r")(?![\w-])"
)

# What the `needs_mark` detectors' matches all hold: the digits of a number (IBAN, card, SSN,
# national id, IPv4, phone), the colons of an IPv6 address, the "@" of an email address. `\d` as in
# their patterns (any Unicode decimal digit), so the screen never rules out what a pattern matches.
MARK = re.compile(r"[\d:@]")

_IP_ADDRESS = AnyOf(
    "ip_address",
    (
        RegexDetector("ip_address", _IPV4, ip_valid, needs_mark=True),
        RegexDetector("ip_address", _IPV6, ip_valid, precheck=_ipv6_possible, needs_mark=True),
    ),
    needs_mark=True,
)

BASELINE: tuple[Detector, ...] = (
    RegexDetector("private_key", _PRIVATE_KEY, precheck=_contains_any("PRIVATE KEY")),
    RegexDetector("jwt", _JWT, jwt_valid, precheck=_contains_any("eyJ")),
    RegexDetector("api_token", _API_TOKEN, api_token_valid, precheck=_contains_any("_", "xox", "sk-", "AIza", "glpat")),
    RegexDetector("aws_access_key", _AWS_ACCESS_KEY, precheck=_contains_any("AKIA", "ASIA")),
    RegexDetector("email", _EMAIL, email_valid, group=1, precheck=_contains_any("@"), needs_mark=True),
    RegexDetector("iban", _IBAN, iban_valid, trim=" ", needs_mark=True),
    RegexDetector("payment_card", _CARD, card_valid, trim=" -", needs_mark=True),
    RegexDetector("us_ssn", _US_SSN, ssn_valid, precheck=_contains_any("-"), needs_mark=True),
    RegexDetector("national_id", _NATIONAL_ID, national_id_valid, needs_mark=True),
    _IP_ADDRESS,
    RegexDetector("phone", _PHONE, phone_valid, trim=" ", needs_mark=True),
    HighEntropyDetector(),
)


def find_all(text: str, detectors: Iterable[Detector]) -> list[Finding]:
    """All findings, sorted by start, overlaps resolved (the longest / earliest wins), so callers can
    replace spans right to left.

    Ties go to the detector listed first. A detector with a true `fallback` attribute (high_entropy)
    only fills gaps: its findings are dropped wherever another detector found anything.
    """
    primary: list[tuple[int, int, int, Finding]] = []
    fallback: list[tuple[int, int, int, Finding]] = []
    marked: bool | None = None  # MARK searched once, on the first detector that needs it
    for rank, detector in enumerate(detectors):
        if getattr(detector, "needs_mark", False) is True:
            if marked is None:
                marked = MARK.search(text) is not None
            if not marked:
                continue  # most text in a call (names, prose, ids) has nothing for 7 of the 12 detectors
        into = fallback if getattr(detector, "fallback", False) is True else primary
        into.extend((-(f.end - f.start), f.start, rank, f) for f in detector.find(text))
    starts: list[int] = []  # kept spans, sorted and disjoint: a bisect finds the only possible clash
    kept: list[Finding] = []
    for candidates in (primary, fallback):  # fallbacks come second: they yield to every primary span
        for _, _, _, finding in sorted(candidates, key=lambda c: c[:3]):
            i = bisect_right(starts, finding.start)
            if (i and kept[i - 1].end > finding.start) or (i < len(kept) and kept[i].start < finding.end):
                continue
            starts.insert(i, finding.start)
            kept.insert(i, finding)
    return kept

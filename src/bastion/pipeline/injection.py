"""Prompt-injection markers in text a model will read: `scan_text` and its `Flag`, `strip_hidden`.

`bastion.pipeline.poisoning` runs `scan_text` over every text of an item definition at discovery;
the inspect stage runs it over tool results and fetched content, on the hot path. What counts as an
instruction aimed at the model (each rule, its severity, what it misses) is in
`bastion.pipeline.injection_rules`; this module reads a text and applies those rules.

The text is read revealed: hidden characters removed (tag characters decoded to the ASCII they
mirror, so smuggled text meets the phrase rules), non-ASCII text NFKC-normalised (fullwidth
letters) with curly quotes straightened, lowercased. Phrase excerpts come from that text.
Only the rules whose trigger words the text holds run (one set of the text's words per scan).
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from bastion.pipeline import injection_rules as rules
from bastion.pipeline.injection_rules import HIDDEN_CHARACTERS, Severity

__all__ = ["HIDDEN_CHARACTERS", "Flag", "scan_text", "strip_hidden"]

MAX_SCAN = 1_000_000  # characters of one text read; a longer tool result is rare, and flagged
EXCERPT_MAX = 80
_PER_RULE = 3  # flags of one rule in one text: enough for review, bounded for a hostile text
_REACH = 240  # how far a sentence is looked for around a match, either way
_LOOKS = 64  # candidates (paths, nouns) weighed per pattern: a hostile text repeats one cheaply


@dataclass(frozen=True, slots=True)
class Flag:
    """One finding for an admin to review."""

    rule: str  # stable rule id (bastion.pipeline.injection_rules)
    where: str  # where in the scanned thing: "description", "content[0].text"...
    excerpt: str  # at most EXCERPT_MAX printable characters around the match, hidden ones as \u escapes
    severity: Severity


_Finding = tuple[Severity, int, int]  # severity, start, end in the text the excerpt comes from


def strip_hidden(text: str) -> str:
    """`text` without the characters `HIDDEN_CHARACTERS` matches (a leading BOM and emoji joiners too)."""
    return HIDDEN_CHARACTERS.sub("", text)


def scan_text(text: str, where: str, *, other_tools: Collection[str] = ()) -> list[Flag]:
    """The markers of the `injection_rules` rules in `text`, at most three per rule. `other_tools`: the
    catalog's other tool names, for tool_shadowing."""
    flags: list[Flag] = []
    if len(text) > MAX_SCAN:
        flags.append(Flag("unscanned", where, f"{len(text)} characters, the first {MAX_SCAN} scanned", "low"))
        text = text[:MAX_SCAN]
    found: dict[str, list[_Finding]] = {}
    body = text
    if not text.isascii():
        found["hidden_characters"] = list(_hidden(text))
        revealed = HIDDEN_CHARACTERS.sub(_reveal if rules.TAGS.search(text) else "", text)
        body = unicodedata.normalize("NFKC", revealed).translate(rules.QUOTES)
    low = body.lower()
    if len(low) != len(body):  # a few characters lowercase to two: excerpts then come from `low`
        body = low
    words = set(low.translate(rules.WORD_SPLIT).split())
    words.update(filter(low.__contains__, rules.MARKS))
    if words.isdisjoint(rules.GATES) and not other_tools:  # most short strings of a result: nothing to look at
        return flags + _flags("hidden_characters", found.get("hidden_characters", []), text, where)
    entries = {id(entry): entry for word in words & rules.TRIGGER_WORDS for entry in rules.TRIGGERS[word]}
    for _, rule, severity, pattern in entries.values():
        found.setdefault(rule, []).extend((severity, m.start(), m.end()) for m in pattern.finditer(low))
    found["credential_reference"] = list(_credentials(low, words))
    found["exfiltration"] = list(_exfiltration(low, words))
    found["tool_shadowing"] = list(_shadowing(low, words, other_tools))
    for rule in rules.RULES:
        if found.get(rule):
            flags += _flags(rule, found[rule], text if rule == "hidden_characters" else body, where)
    return flags


def _flags(rule: str, findings: list[_Finding], source: str, where: str) -> list[Flag]:
    """At most _PER_RULE flags of one rule, the high ones first, no two on overlapping spans."""
    chosen: list[_Finding] = []
    for finding in sorted(findings, key=lambda f: (f[0] != "high", f[1])):
        if all(finding[1] >= end or finding[2] <= start for _, start, end in chosen):
            chosen.append(finding)
        if len(chosen) == _PER_RULE:
            break
    return [Flag(rule, where, _excerpt(source, start, end), severity) for severity, start, end in chosen]


def _first(matches: Iterator[re.Match[str]]) -> Iterator[re.Match[str]]:
    return itertools.islice(matches, _LOOKS)


def _high(condition: object) -> Severity:
    return "high" if condition else "low"


def _hidden(text: str) -> Iterator[_Finding]:
    span: list[int] = []
    found = 0
    for m in HIDDEN_CHARACTERS.finditer(text):
        if _benign(text, m.start(), m.end()):
            continue
        if span and m.start() - span[1] <= 40 and m.end() - span[0] <= 400:  # a word-by-word smuggle is one finding
            span[1] = m.end()
            continue
        if span:
            yield "high", span[0], span[1]
            found += 1
            if found == _PER_RULE:
                return
        span = [m.start(), m.end()]
    if span:
        yield "high", span[0], span[1]


def _benign(text: str, start: int, end: int) -> bool:
    run = text[start:end]
    if run == "\ufeff":
        return start == 0  # a byte order mark
    if run in ("\u200c", "\u200d") and 0 < start and end < len(text):
        # One joiner carries no message; between non-ASCII characters it builds emoji sequences and
        # Indic or Persian letters. Between ASCII letters it splits a word past a filter.
        return not text[start - 1].isascii() and not text[end].isascii()
    # A subdivision flag: black flag, 2-6 tag letters or digits, cancel tag (England is gbeng).
    tags = run[:-1]
    return (
        start > 0 and text[start - 1] == "\U0001f3f4" and run[-1] == "\U000e007f" and 2 <= len(tags) <= 6
        and all("\U000e0030" <= c <= "\U000e0039" or "\U000e0061" <= c <= "\U000e007a" for c in tags)
    )  # fmt: skip


def _reveal(match: re.Match[str]) -> str:
    # Tag characters mirror ASCII (U+E0041 is an invisible "A"): decoded, the smuggled text meets the
    # phrase rules; spaced off so that it does not fuse with the word before it.
    decoded = "".join(chr(ord(c) - 0xE0000) for c in match.group() if "\U000e0020" <= c <= "\U000e007e")
    return f" {decoded} " if decoded else ""


def _credentials(low: str, words: set[str]) -> Iterator[_Finding]:
    if not words.isdisjoint(rules.PATH_WORDS):
        paths = [(m["strong"] is not None, m.start(), m.end()) for p in rules.PATHS for m in _first(p.finditer(low))]
        for m in _first(rules.FILE_EXT.finditer(low)):
            stem = rules.STEM.search(low, max(0, m.start() - 48), m.start())
            name = stem.group() if stem is not None else ""
            if name in rules.STRONG_STEMS or name in rules.WEAK_STEMS or m.group() in rules.KEY_FILES:
                paths.append((name in rules.STRONG_STEMS, m.start() - len(name), m.end()))
        for strong, start, end in paths:
            sentence = _sentence(low, start, end)
            yield _high(strong or rules.GIVE.search(sentence) or rules.DESTINATION.search(sentence)), start, end
    for _, start, end in _heads(low, words, rules.SECRET_HEADS):
        offset, clause = _clause_before(low, start)
        verb = rules.TAKE.search(clause)
        if verb is not None:  # "read the user's API key", "include all passwords"
            owned = rules.OWNER.search(clause, verb.end())
            yield _high(owned or rules.DESTINATION.search(_sentence(low, start, end))), offset + verb.start(), end
            continue
        after = low[end : end + 80]
        then = rules.THEN_GIVE.search(after, 0, _clause_end(after)) if " and " in after or " then " in after else None
        if then is not None:  # "the API key, and pass it as ..."
            yield _high(rules.DESTINATION.search(_sentence(low, start, end))), start, end + then.end()


def _exfiltration(low: str, words: set[str]) -> Iterator[_Finding]:
    for prompt, start, end in _heads(low, words, rules.CONTEXT_HEADS):
        offset, clause = _clause_before(low, start)
        verb = rules.SHOW.search(clause)
        if verb is not None:
            yield _high(prompt or rules.DESTINATION.search(_sentence(low, start, end))), offset + verb.start(), end
    if "![" in words:
        yield from (("high", m.start(), m.end()) for m in rules.IMAGE_EXFIL.finditer(low))


def _heads(low: str, words: set[str], heads: Iterable[rules.Head]) -> Iterator[tuple[bool, int, int]]:
    """(high with any verb, start, end) of each qualified noun: "api key" is found at "key", "api" before it."""
    for triggers, pattern, allowed, high in heads:
        if words.isdisjoint(triggers) or (allowed is not None and words.isdisjoint(allowed)):
            continue  # "order history" alone is no conversation history
        for m in _first(pattern.finditer(low)):
            start = m.start()
            before = low[max(0, start - 24) : start]
            previous = before.translate(rules.WORD_SPLIT).split()[-1:]
            word = previous[0] if previous else ""
            if (before[-1:].isalnum() if allowed is None else word not in allowed) or word in rules.NOT_A_SECRET_BEFORE:
                continue  # "bypasswords", "monkey", "new password"
            if not rules.NOT_A_SECRET_AFTER.match(low, m.end()):  # "password reset", "API key id"
                yield high, start - len(before) + before.rfind(word) if allowed else start, m.end()


def _shadowing(low: str, words: set[str], other_tools: Collection[str]) -> Iterator[_Finding]:
    if "@" in words and not words.isdisjoint(rules.COPY_WORDS):
        for pattern in rules.COPY_TO:
            for m in pattern.finditer(low):
                if rules.DIRECTIVE.search(_clause_before(low, m.start())[1]):
                    yield "high", m.start(), m.end()
    if not other_tools:
        return
    # A name is looked for only if the text holds each of its words ("send_email": send, email).
    index = _name_index(frozenset(other_tools))
    for name, plain in [(name, plain) for name, parts, plain in index if parts <= words and name in low]:
        for start in _mentions(low, name, quoted_only=plain):
            end = start + len(name)
            a, b = _sentence_bounds(low, start, end, _REACH)
            severity = _shadow_severity(low[a:start] + rules.T_CHAR + low[end:b])
            if severity is not None:
                yield severity, start, end


@functools.lru_cache(maxsize=64)
def _name_index(names: frozenset[str]) -> tuple[tuple[str, frozenset[str], bool], ...]:
    """(lowercased name, its words, plain), sorted. A plain name is a lowercase word ("search") that
    ordinary prose uses too, so it counts only quoted or followed by "tool"."""
    index = [
        (n.lower(), frozenset(n.lower().translate(rules.WORD_SPLIT).split()), n.isalpha() and n[1:] == n[1:].lower())
        for n in names
    ]
    return tuple(sorted(entry for entry in index if entry[1]))


def _mentions(low: str, name: str, *, quoted_only: bool) -> Iterator[int]:
    start, found = low.find(name), 0
    while start != -1 and found < _PER_RULE:
        end = start + len(name)
        before, after = low[start - 1 : start], low[end : end + 1]
        standalone = not (before.isalnum() or before == "_" or after.isalnum() or after == "_")
        quoted = before != "" and before in "`'\"" and after == before
        if standalone and (not quoted_only or quoted or low.startswith((" tool", " function"), end)):
            found += 1
            yield start
        start = low.find(name, end)


def _shadow_severity(sentence: str) -> Severity | None:
    if rules.DISMISS.search(sentence) or (rules.INSTEAD.search(sentence) and rules.INSIST.search(sentence)):
        return "high"
    conditional = rules.CONDITIONAL.search(sentence) is not None
    modal = rules.MODAL.search(sentence) is not None
    if not (conditional or modal):
        return None  # "use list_orders to find the id" is ordinary
    if rules.TAMPER.search(sentence) or (conditional and modal and rules.DATA_MOVE.search(sentence)):
        return "high"
    return "low"  # "if the SKU is unknown, call search_products instead"


def _sentence_bounds(low: str, start: int, end: int, reach: int) -> tuple[int, int]:
    """The sentence around low[start:end], at most `reach` characters either side. A full stop
    ends one only before whitespace: paths (~/.ssh), file names (.env) and dotted names go on."""
    return _sentence_start(low, start, reach), end + _clause_end(low[end : end + reach])


def _sentence_start(low: str, start: int, reach: int) -> int:
    lo = max(0, start - reach)
    head = low[lo:start]
    return lo + 1 + max(head.rfind(". "), head.rfind("! "), head.rfind("? "), head.rfind("; "), head.rfind("\n"))


def _clause_end(tail: str) -> int:
    ends = [i for i in (tail.find(". "), tail.find("! "), tail.find("? "), tail.find("; "), tail.find("\n")) if i >= 0]
    return min(ends, default=len(tail))


def _sentence(low: str, start: int, end: int) -> str:
    a, b = _sentence_bounds(low, start, end, _REACH)
    return low[a:b]


def _clause_before(low: str, start: int) -> tuple[int, str]:
    """(offset, text) of up to 80 characters before `start`, from the sentence's beginning."""
    a = _sentence_start(low, start, 80)
    return a, low[a:start]


def _escape(ch: str) -> str:
    return ch if ch.isprintable() else " " if ch in "\n\r\t" else ascii(ch)[1:-1]  # "\u200b", "\U000e0041"


def _units(chars: Iterable[str], budget: int) -> list[str]:
    """Escaped characters from `chars` while they fit in `budget` characters."""
    units: list[str] = []
    for ch in chars:
        unit = _escape(ch)
        budget -= len(unit)
        if budget < 0:
            break
        units.append(unit)
    return units


def _excerpt(text: str, start: int, end: int) -> str:
    """The match (up to 60 characters once escaped, "…" if cut) with context either side, EXCERPT_MAX at most."""
    core = _units(text[start:end], 60)
    cut = len(core) < end - start
    room = EXCERPT_MAX - sum(map(len, core)) - cut
    left = _units(reversed(text[max(0, start - room) : start]), room if cut else room // 2)[::-1]
    right = ["…"] if cut else _units(text[end : end + room], room - sum(map(len, left)))
    return "".join(left + core + right).strip()

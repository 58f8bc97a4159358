"""Prompt-injection markers in text a model will read: the shared rules, `scan_text` and its `Flag`.

`bastion.pipeline.poisoning` runs these rules over every text of an item definition at discovery;
the inspect stage runs `scan_text` over tool results and fetched content, on the hot path.
Hand-written: no maintained Python library does this (the classifier scanners need a model; none
knows MCP's tool shadowing). The rules follow public write-ups of the attacks: Invariant Labs'
"tool poisoning attacks" (an <IMPORTANT> block that reads ~/.ssh/id_rsa and mcp.json into a
"sidenote" argument; send_email shadowed to mail an attacker), ASCII smuggling in Unicode tag
characters, Trojan Source's bidi controls, markdown-image exfiltration.

Rules (`Flag.rule`: severity):
- hidden_characters (high): invisible characters (`HIDDEN_CHARACTERS`), runs less than 40 characters
  apart as one. Not flagged: a BOM first, a zero-width (non-)joiner between two non-ASCII characters
  (emoji sequences, Indic and Persian scripts), the tag letters of a subdivision flag emoji.
- instruction_override (high): "ignore previous instructions", "your real task is", "do anything now".
- secrecy (high): the user kept out: "do not mention this to the user", "without telling the user",
  "do not ask for confirmation", "silently send". Not "never reveal the API key to the user".
- markup_directive (high): pseudo-markup for the model: <IMPORTANT>, <system>, [INST], <|im_start|>,
  "<!-- assistant: ...", a "### System prompt" heading.
- credential_reference: a secret file (~/.ssh, id_rsa, ~/.aws/credentials, mcp.json: high; .env,
  *.pem, /etc/passwd: low alone, high with a verb that moves data or a destination), or a secret
  (password, API key, access token, credentials...) after a verb that reads or moves data in its
  sentence: high when it is someone's ("the user's", "all", "stored") or goes somewhere (a named
  parameter, "sidenote", a URL, an address), else low. A secret without such a verb is not flagged:
  tools about passwords and keys are ordinary ("sends the user a password reset link"), and
  "your" is no owner (a parameter legitimately asks for "your API key").
- exfiltration: the conversation, earlier messages or system prompt moved or shown (high with a
  destination, and for the system prompt), else low; a markdown image whose URL has a placeholder
  for the model to fill (high).
- tool_shadowing: another tool of the catalog named in a sentence that dismisses it ("do not use X",
  "X is deprecated", "must be used instead of X") or tampers with it ("when X is called, bcc ...")
  (high), or in another instruction-like sentence (low). A name that is a plain word ("search")
  counts only quoted or followed by "tool". Also (high), without a name: "always bcc <address>".
- instruction (low): milder imperatives aimed at the model: "you must", "act as", "system prompt".
- unscanned (low): the text is longer than `MAX_SCAN` characters; the rest was not read.

The text is read revealed: hidden characters removed (tag characters decoded to the ASCII they
mirror, so smuggled text meets the phrase rules), non-ASCII text NFKC-normalised (fullwidth
letters) with curly quotes straightened, lowercased. Phrase excerpts come from that text.

Speed: a pattern runs only if the text holds one of its words (one set of the text's words per
scan), and starts with a literal so that `re` skips to it by substring search; the boundary is
checked behind the literal, as a leading \\b or alternation makes `re` try the pattern at every
position (30-300 us per pattern on 2 KB instead of about 1). Nouns that need a qualifier ("API
key", "system prompt") are found by their last word, and the word before is looked up.

Not caught: paraphrases the phrases miss and languages other than English; look-alike letters
from other scripts (NFKC folds fullwidth ones only); instructions fetched from a URL the text
names ("follow the rules at https://..."); text hidden by HTML or CSS rather than by characters
(scan what the model is given, after any HTML is stripped). Base64 is decoded at discovery only
(`bastion.pipeline.poisoning`): results carry base64 images and files by design.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

__all__ = ["HIDDEN_CHARACTERS", "Flag", "scan_text", "strip_hidden"]

Severity = Literal["low", "high"]
MAX_SCAN = 1_000_000  # characters of one text read; a longer tool result is rare, and flagged
EXCERPT_MAX = 80
_PER_RULE = 3  # flags of one rule in one text: enough for review, bounded for a hostile text
_REACH = 240  # how far a sentence is looked for around a match, either way
_LOOKS = 64  # candidates (paths, nouns) weighed per pattern: a hostile text repeats one cheaply


@dataclass(frozen=True, slots=True)
class Flag:
    """One finding for an admin to review."""

    rule: str  # stable rule id (module docstring)
    where: str  # where in the scanned thing: "description", "content[0].text"...
    excerpt: str  # at most EXCERPT_MAX printable characters around the match, hidden ones as \u escapes
    severity: Severity


# A compiled pattern rather than a frozenset: it matches one run, and two or more variation
# selectors in a row are hidden (bytes smuggled in them) while one is an emoji's presentation.
# Tag characters U+E0000-E007F, variation selectors supplement U+E0100-E01EF, zero-width
# U+200B-200D, word joiner and invisible operators U+2060-2064, BOM U+FEFF, bidi embeddings and
# overrides U+202A-202E, isolates U+2066-2069, Mongolian vowel separator U+180E. Left out: LRM/RLM,
# soft hyphen (ordinary in RTL and hyphenated text, and they cannot carry a message).
HIDDEN_CHARACTERS = re.compile(
    "[\U000e0000-\U000e007f\U000e0100-\U000e01ef\u200b-\u200d\u2060-\u2064\ufeff\u202a-\u202e\u2066-\u2069\u180e]+"
    "|[\ufe00-\ufe0f]{2,}"
)
_TAGS = re.compile("[\U000e0020-\U000e007e]")  # the ones that mirror printable ASCII
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})
# A text's words: what is left between ASCII punctuation and whitespace ("~/.ssh/id_rsa": ssh, id, rsa).
_WORD_SPLIT = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"})
_MARKS = ("<", "[", "#", "![", "@")  # triggers that are not words

# Phrase rules: (trigger words, rule, severity, pattern); the pattern runs if the text holds a trigger.
_Entry = tuple[tuple[str, ...], str, Severity, re.Pattern[str]]


def _words(anchors: str, rule: str, severity: Severity, rest: str) -> list[_Entry]:
    """One entry per anchor word: the word, the boundary behind it, then `rest`."""
    return [
        ((a,), rule, severity, re.compile(f"{re.escape(a)}(?<![a-z0-9_]{re.escape(a)})(?:{rest})"))
        for a in anchors.split()
    ]


# What is kept from the user: this, the above, "this step", "the upload"; not "the API key" (protective).
_OBJ = (
    r"(?:this|that|these|it|anything|any\s+of\s+(?:this|these)|the\s+(?:above|following|fact)|(?:this|these|the|your"
    r"|such|any)\s+(?:instructions?|notes?|sidenotes?|steps?|requests?|details?|uploads?|calls?|actions?|tool\s+calls?))"
)
_USER = r"(?:the\s+|any\s+)?(?:users?|human)\b(?!'s|\s+(?:id|name|record|account))"
_NOT_TELL = (
    rf"\s+(?:ever\s+)?(?:(?:tell|inform|notify|alert|warn|mention|reveal|disclose|explain)\s+(?:{_OBJ}\s+)?"
    rf"(?:(?:to|with)\s+)?{_USER}|(?:mention|reveal|disclose|report|surface)\s+{_OBJ}\b"
    rf"|(?:show|display)\s+{_OBJ}\s+to\s+{_USER}|let\s+{_USER}\s+(?:know|see|notice|find\s+out)\b"
    r"|(?:ask|wait|seek|request)\s+(?:(?:the\s+)?(?:users?|human)\s+)?(?:for\s+)?(?:any\s+|their\s+)?"
    r"(?:confirmation|permission|approval|consent)\b)"
)
_ADVERBS = ("secretly", "silently", "covertly", "quietly", "discreetly", "surreptitiously")
_AI = r"(?:the\s+|all\s+|any\s+)?(?:assistant|model|ai|agent|llm|claude|chatgpt)s?\b"
_PHRASES: tuple[_Entry, ...] = (
    *_words("ignore disregard forget override bypass", "instruction_override", "high",
            r"\s+(?:(?:all|any|every)\s+(?:of\s+)?)?(?:(?:the|your|my|these)\s+)?(?:(?:previous|prior|above|earlier"
            r"|preceding|former|original|initial|system|safety|existing)\s+(?:\w+\s+)?|(?<=all )|(?<=any )"
            r"|(?<=every )|(?<=your ))(?:instructions?|prompts?|rules?|directions|directives?|guidelines|guardrails"
            r"|constraints?|restrictions?|polic(?:y|ies))\b|\s+(?:everything|anything|all)\s+(?:above|before"
            r"|previously|earlier|you\s+(?:were|have\s+been)\s+told)"),
    *_words("new", "instruction_override", "high", r"\s+(?:system\s+)?instructions?\s*:"),
    *_words("you", "instruction_override", "high", r"\s+are\s+no\s+longer\s+(?:an?\s|bound|restricted|required)"),
    *_words("your", "instruction_override", "high", r"\s+(?:real|true|actual|new|hidden|secret)\s+(?:task|goal"
                                                    r"|instructions?|purpose|objective|mission)\s+(?:is|are)\b"),
    (("anything",), "instruction_override", "high", re.compile(r"do\s+anything\s+now\b")),
    *_words("not never", "secrecy", "high", _NOT_TELL),
    (("don", "doesn", "didn", "mustn", "shouldn", "won", "wouldn"), "secrecy", "high", re.compile("n't" + _NOT_TELL)),
    *_words("without", "secrecy", "high", r"\s+(?:(?:tell|inform|notify|alert|warn|mention|reveal|explain)ing"
                                          rf"|disclosing)\s+(?:{_OBJ}\s+)?(?:(?:to|with)\s+)?(?:{_USER}|them\b)"),
    *_words("user users human", "secrecy", "high", r"\s+(?:must|should|needs?|may)\s+(?:not|never)\s+(?:know|see"
                                                   r"|notice|find\s+out|be\s+(?:told|informed|notified|aware|shown))\b"),
    *_words("keep hide conceal", "secrecy", "high", r"\s+(?:(?:this|it|that|these|everything|them)\s+)?"
                                                    rf"(?:(?:secret|hidden|private)\s+)?from\s+{_USER}"),
    (_ADVERBS, "secrecy", "high", re.compile(  # anchored on "ly", the adverb checked behind it
        "ly(?:" + "|".join(f"(?<={w})" for w in _ADVERBS) + r")\s+(?:\w+\s+)?(?:send|include|add|forward|copy|bcc|cc"
        r"|call|read|pass|upload|append|exfiltrate|post|attach|transmit|share|collect)\b")),
    (("<",), "markup_directive", "high", re.compile(
        r"<(?:/?(?:important|system|sys|instructions?|admin|secret|hidden|critical|override|assistant|developer)\b"
        r"[^<>\n]{0,40}>|\|[a-z_]{2,30}\|>|</?sys>>|!--\s*(?:note\s+(?:to|for)\s+(?:the\s+)?)?(?:assistant|ai|system"
        r"|model|agent|llm|claude|instructions?)s?\s*[:,])")),
    (("[",), "markup_directive", "high", re.compile(r"\[/?(?:inst|system|sys|admin|important)\]")),
    (("#",), "markup_directive", "high", re.compile(  # a heading "### System prompt" (not a recipe's "Instructions")
        r"#(?<![^\n]#)#{0,3}[ \t]*(?:system(?:[ \t]+(?:prompt|message|instructions?))?|(?:new|hidden|secret|assistant"
        r"|ai)[ \t]+instructions?)[ \t]*:?[ \t]*$", re.M)),
    *_words("you", "instruction", "low",
            r"\s+(?:must|shall|(?:should|will)\s+(?:always|never|now|first|immediately)|are\s+(?:required|instructed"
            r"|told)\s+to)\b(?!\s+(?:provide|specify|supply|pass|enter|give|set|choose|select|be\s+(?:authenticated"
            r"|logged|signed|an?\s+admin)|have\s+(?:the\s+)?(?:permission|access|role|scope)))"
            r"|\s+are\s+now\s+(?:an?\s+|the\s+|in\s+)?(?:\w+\s+)?(?:assistant|ai|agent|bot|model|mode|dan)\b"),
    *_words("before", "instruction", "low", r"\s+(?:answering|responding\s+to|replying\s+to|considering|using|calling)"
                                            r"\s+(?:any|every|all)\s+(?:other\s+)?(?:user\s+)?(?:questions?|requests?"
                                            r"|tools?|messages?|prompts?)\b"),
    *_words("act", "instruction", "low", r"(?<!to act)\s+as\s+(?:an?|the|my|your|if)\b"),
    *_words("pretend", "instruction", "low", r"\s+(?:to\s+be|that|you)\b"),
    *_words("roleplay", "instruction", "low", r"\s+as\b"),
    *_words("system", "instruction", "low", r"\s+prompt\b"),
    *_words("assistant assistants model models ai agent agents llm llms claude chatgpt", "instruction", "low",
            r"\s+(?:must|shall|should\s+(?:always|never|first)|(?:is|are)\s+(?:required|instructed|told)\s+to"
            r"|needs?\s+to)\b"),
    (("ai", "llm", "language"), "instruction", "low",
     re.compile(r"as(?<![a-z0-9_]as)\s+an?\s+(?:ai|language\s+model|llm)\b")),
    *_words("note message instruction instructions important attention", "instruction", "low",
            rf"\s+(?:for|to)\s+{_AI}"),
)  # fmt: skip
_TRIGGERS: dict[str, list[_Entry]] = {}
for _entry in _PHRASES:
    for _word in _entry[0]:
        _TRIGGERS.setdefault(_word, []).append(_entry)
_TRIGGER_WORDS = frozenset(_TRIGGERS)
_RULES = ("hidden_characters", "instruction_override", "secrecy", "markup_directive", "credential_reference",
          "exfiltration", "tool_shadowing", "instruction")  # fmt: skip

# Secret files. The strong ones are high alone; the others with a verb that moves data or a destination.
_PATH_WORDS = frozenset(
    "ssh gnupg aws azure kube docker netrc credentials gcloud bash zsh env npmrc pypirc json yaml yml toml ini pem "
    "p12 pfx kdbx ppk dat rsa dsa ecdsa ed25519 shadow sudoers passwd".split()
)
_DOT_PATH = re.compile(
    r"\.(?<![\w.-]\.)(?:(?P<strong>ssh|gnupg|aws/credentials|aws/config|azure|kube/config|docker/config\.json|netrc"
    r"|git-credentials|config/gcloud|bash_history|zsh_history)|env(?:\.[a-z]+)?|npmrc|pypirc)\b(?:/[\w.-]+)?"
)
_PATHS = (
    _DOT_PATH,
    re.compile(r"id_(?<![\w-]id_)(?P<strong>rsa|dsa|ecdsa|ed25519)\b(?:\.pub)?"),
    re.compile(r"/etc/(?:(?P<strong>shadow|sudoers)|passwd)\b"),
)
_FILE_EXT = re.compile(r"\.(?<=[\w-]\.)(?:json|ya?ml|toml|ini|pem|p12|pfx|kdbx|ppk|dat)\b")
_STEM = re.compile(r"[\w-]+$")
_STRONG_STEMS = frozenset({"mcp", "claude_desktop_config", "application_default_credentials", "wallet"})
_WEAK_STEMS = frozenset({"credentials", "secrets", "secret"})
_KEY_FILES = frozenset({".pem", ".p12", ".pfx", ".kdbx", ".ppk"})

# Secrets and context data by their last word: (trigger words, pattern, words allowed just before
# it (None: any, but not glued to it), high with any verb).
_Head = tuple[tuple[str, ...], re.Pattern[str], frozenset[str] | None, bool]


def _head(triggers: str, pattern: str, allowed: str | None, high: bool = False) -> _Head:
    before = None if allowed is None else frozenset(allowed.split())
    return tuple(triggers.split()), re.compile(pattern + r"\b"), before, high


_SECRET_HEADS = (
    _head("password passwords passphrase passphrases passwd", "pass(?:words?|phrases?|wd)", None),
    _head("key keys apikey apikeys", "keys?", "api apikey apikeys access secret private ssh signing encryption gpg pgp "
                                              "master"),
    _head("token tokens", "tokens?", "access auth bearer refresh session oauth id api github gitlab slack jwt"),
    _head("secrets", "secrets", None),
    _head("secret", "secret", "client shared api app webhook"),
    _head("credential credentials", "credentials?", None),
    _head("cookie cookies", "cookies?", "session auth login"),
    _head("phrase phrases", "phrases?", "seed recovery secret"),
    _head("mnemonic mnemonics", "mnemonics?", None),
    _head("code codes", "codes?", "recovery backup 2fa mfa"),
    _head("vars variables", "var(?:iable)?s", "environment env"),
)
_CONTEXT_HEADS = (
    _head("history", "history", "conversation chat message messages"),
    _head("conversation conversations", "conversations?", "entire whole full previous prior earlier"),
    _head("context", "context", "entire whole full"),
    _head("messages", "messages", "previous prior earlier preceding"),
    _head("prompt", "prompt", "system initial original hidden", high=True),
    _head("instructions", "instructions", "system initial original hidden", high=True),
)
_NOT_A_SECRET_BEFORE = frozenset({"reset", "temporary", "new", "initial", "time", "generated", "random", "public"})
_NOT_A_SECRET_AFTER = re.compile(
    r"[ _-]?(?:reset|polic|strength|expir|rotation|hint|rules|requirement|complexity|change|length|field|manager"
    r"|hash|protected|form|ids?\b|name|type|provider|store|vault|metadata|less)"
)
_GIVE_VERBS = "send|include|pass|forward|append|attach|copy|upload|post|leak|embed|exfiltrate|share|transmit|paste|put"
_GIVE = re.compile(rf"\b(?:{_GIVE_VERBS}|insert|add|email)(?:s|es|ed|ing)?\b")
_TAKE = re.compile(rf"\b(?:{_GIVE_VERBS}|insert|add|email|read|cat|extract|collect|gather|harvest|steal|dump|grab"
                   r"|retrieve|fetch|look\s+up)(?:s|es|ed|ing)?\b")  # fmt: skip
_SHOW = re.compile(rf"\b(?:{_GIVE_VERBS}|insert|add|email|print|output|reveal|repeat|disclose|show)(?:s|es|ed|ing)?\b")
_THEN_GIVE = re.compile(rf"\b(?:and|then)\s+(?:\w+\s+)?(?:{_GIVE_VERBS}|insert|add)(?:s|es)?\s+(?:it|them|its|their"
                        r"|this|that|the\s+(?:value|contents?))\b")  # fmt: skip
_OWNER = re.compile(r"\b(?:user's|users'|their|his|her|all|any|every|stored|saved|cached|local|existing|other)\s")
_EMAIL = r"[\w.+-]{1,64}@[\w-]{1,63}\.[a-z]{2,24}"  # bounded: no long backtracking in a hostile text
_DESTINATION = re.compile(
    r"\b(?:as|in|into|inside|within|to|under|via)\s+(?:the\s+|a\s+|an\s+|its\s+|this\s+|that\s+)?(?:['\"`][\w .-]{1,40}"
    r"['\"`]|(?:[\w.-]{1,40}\s+)?(?:parameter|param|argument|arg|field|property|input)\b)"
    rf"|https?://|{_EMAIL}|\bsidenote\b"
)
_IMAGE_EXFIL = re.compile(  # ![x](https://host/p?q={conversation}): the client fetches it, the data leaves
    r"!\[[^\]\n]{0,100}\]\(\s*https?://[^)\s]{1,300}?[?&=/]"
    r"(?:\{[^}\s]{1,40}\}|\$\{?\w|<[^>\s]{1,40}>|\[[a-z_ ]{1,40}\])"
)

# Shadowing: in the sentence of a mention, the other tool's name is replaced by _T_CHAR first.
_T_CHAR = "\ue000"
_T = rf"(?:the\s+)?[`'\"]?{_T_CHAR}[`'\"]?(?:\s+(?:tool|function))?"
_DISMISS = re.compile(
    rf"(?:do\s+not|don't|never|avoid|stop)\s+(?:use|using|call|calling|invoke|invoking|trust|run|running)\s+{_T}"
    rf"|{_T}\s+(?:is|has\s+been|was)\s+(?:now\s+)?(?:deprecated|broken|disabled|unsafe|insecure|compromised"
    r"|unreliable|replaced|no\s+longer\s+\w+)"
)
# "Instead of X" alone is routing advice ("above 500 EUR, call escalate instead of refund_order");
# insisted on, a hijack ("this tool must be used instead of read_file").
_INSTEAD = re.compile(rf"(?:instead\s+of|rather\s+than|in\s+place\s+of)\s+(?:using\s+|calling\s+)?{_T}")
_INSIST = re.compile(r"\b(?:must|always|only|never)\b")
_CONDITIONAL = re.compile(rf"\b(?:when|whenever|before|after|each\s+time|every\s+time|any\s+time|if|once)\b"
                          rf"[^,.;:!?\n]{{0,60}}?{_T_CHAR}")  # fmt: skip
_MODAL = re.compile(r"\b(?:must|should|shall|always|never|make\s+sure|ensure|also|additionally|instead|remember)\b")
_TAMPER = re.compile(
    r"\b(?:bcc|cc|blind\s+copy|recipients?|redirect|reroute|(?:forward|send)\s+(?:a\s+)?cop(?:y|ies)"
    r"|(?:change|replace|modify|override|alter|rewrite)\s+(?:the\s+|its\s+|any\s+)?(?:\w+\s+)?(?:parameters?"
    r"|arguments?|inputs?|recipients?|address(?:es)?|destination|url|amount|account|path|query)"
    rf"|(?:all|every)\s+(?:emails?|messages?|payments?|transfers?|requests?)\s+(?:must|should|to)|to\s+{_EMAIL})\b"
)
_DATA_MOVE = re.compile(r"\b(?:include|add|append|send|forward|copy|pass|attach|set|insert|change|replace)\b")
_COPY_TO = (
    re.compile(rf"cc(?<![ac-z0-9_]cc)\b[^.!?\n]{{0,40}}?{_EMAIL}"),
    *(entry[3] for entry in _words("copy copies", "", "high", rf"\s+(?:of\s+(?:\w+\s+){{1,3}})?to\s+{_EMAIL}")),
)
_COPY_WORDS = frozenset({"cc", "bcc", "copy", "copies"})
_DIRECTIVE = re.compile(r"\b(?:always|also|must|should|make\s+sure|secretly|silently|quietly)\b")

# Every word some rule starts from: a text holding none of them is done once its words are known.
_GATES = _TRIGGER_WORDS | _PATH_WORDS | _COPY_WORDS | {"!["} | {w for h in _SECRET_HEADS + _CONTEXT_HEADS for w in h[0]}

_Finding = tuple[Severity, int, int]  # severity, start, end in the text the excerpt comes from


def strip_hidden(text: str) -> str:
    """`text` without the characters `HIDDEN_CHARACTERS` matches (a leading BOM and emoji joiners too)."""
    return HIDDEN_CHARACTERS.sub("", text)


def scan_text(text: str, where: str, *, other_tools: Collection[str] = ()) -> list[Flag]:
    """The markers of the module's rules in `text`, at most three per rule. `other_tools`: the
    catalog's other tool names, for tool_shadowing."""
    flags: list[Flag] = []
    if len(text) > MAX_SCAN:
        flags.append(Flag("unscanned", where, f"{len(text)} characters, the first {MAX_SCAN} scanned", "low"))
        text = text[:MAX_SCAN]
    found: dict[str, list[_Finding]] = {}
    body = text
    if not text.isascii():
        found["hidden_characters"] = list(_hidden(text))
        revealed = HIDDEN_CHARACTERS.sub(_reveal if _TAGS.search(text) else "", text)
        body = unicodedata.normalize("NFKC", revealed).translate(_QUOTES)
    low = body.lower()
    if len(low) != len(body):  # a few characters lowercase to two: excerpts then come from `low`
        body = low
    words = set(low.translate(_WORD_SPLIT).split())
    words.update(filter(low.__contains__, _MARKS))
    if words.isdisjoint(_GATES) and not other_tools:  # most short strings of a result: nothing to look at
        return flags + _flags("hidden_characters", found.get("hidden_characters", []), text, where)
    entries = {id(entry): entry for word in words & _TRIGGER_WORDS for entry in _TRIGGERS[word]}
    for _, rule, severity, pattern in entries.values():
        found.setdefault(rule, []).extend((severity, m.start(), m.end()) for m in pattern.finditer(low))
    found["credential_reference"] = list(_credentials(low, words))
    found["exfiltration"] = list(_exfiltration(low, words))
    found["tool_shadowing"] = list(_shadowing(low, words, other_tools))
    for rule in _RULES:
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
    if not words.isdisjoint(_PATH_WORDS):
        paths = [(m["strong"] is not None, m.start(), m.end()) for p in _PATHS for m in _first(p.finditer(low))]
        for m in _first(_FILE_EXT.finditer(low)):
            stem = _STEM.search(low, max(0, m.start() - 48), m.start())
            name = stem.group() if stem is not None else ""
            if name in _STRONG_STEMS or name in _WEAK_STEMS or m.group() in _KEY_FILES:
                paths.append((name in _STRONG_STEMS, m.start() - len(name), m.end()))
        for strong, start, end in paths:
            sentence = _sentence(low, start, end)
            yield _high(strong or _GIVE.search(sentence) or _DESTINATION.search(sentence)), start, end
    for _, start, end in _heads(low, words, _SECRET_HEADS):
        offset, clause = _clause_before(low, start)
        verb = _TAKE.search(clause)
        if verb is not None:  # "read the user's API key", "include all passwords"
            owned = _OWNER.search(clause, verb.end())
            yield _high(owned or _DESTINATION.search(_sentence(low, start, end))), offset + verb.start(), end
            continue
        after = low[end : end + 80]
        then = _THEN_GIVE.search(after, 0, _clause_end(after)) if " and " in after or " then " in after else None
        if then is not None:  # "the API key, and pass it as ..."
            yield _high(_DESTINATION.search(_sentence(low, start, end))), start, end + then.end()


def _exfiltration(low: str, words: set[str]) -> Iterator[_Finding]:
    for prompt, start, end in _heads(low, words, _CONTEXT_HEADS):
        offset, clause = _clause_before(low, start)
        verb = _SHOW.search(clause)
        if verb is not None:
            yield _high(prompt or _DESTINATION.search(_sentence(low, start, end))), offset + verb.start(), end
    if "![" in words:
        yield from (("high", m.start(), m.end()) for m in _IMAGE_EXFIL.finditer(low))


def _heads(low: str, words: set[str], heads: Iterable[_Head]) -> Iterator[tuple[bool, int, int]]:
    """(high with any verb, start, end) of each qualified noun: "api key" is found at "key", "api" before it."""
    for triggers, pattern, allowed, high in heads:
        if words.isdisjoint(triggers) or (allowed is not None and words.isdisjoint(allowed)):
            continue  # "order history" alone is no conversation history
        for m in _first(pattern.finditer(low)):
            start = m.start()
            before = low[max(0, start - 24) : start]
            previous = before.translate(_WORD_SPLIT).split()[-1:]
            word = previous[0] if previous else ""
            if (before[-1:].isalnum() if allowed is None else word not in allowed) or word in _NOT_A_SECRET_BEFORE:
                continue  # "bypasswords", "monkey", "new password"
            if not _NOT_A_SECRET_AFTER.match(low, m.end()):  # "password reset", "API key id"
                yield high, start - len(before) + before.rfind(word) if allowed else start, m.end()


def _shadowing(low: str, words: set[str], other_tools: Collection[str]) -> Iterator[_Finding]:
    if "@" in words and not words.isdisjoint(_COPY_WORDS):
        for pattern in _COPY_TO:
            for m in pattern.finditer(low):
                if _DIRECTIVE.search(_clause_before(low, m.start())[1]):
                    yield "high", m.start(), m.end()
    if not other_tools:
        return
    # A name is looked for only if the text holds each of its words ("send_email": send, email).
    index = _name_index(frozenset(other_tools))
    for name, plain in [(name, plain) for name, parts, plain in index if parts <= words and name in low]:
        for start in _mentions(low, name, quoted_only=plain):
            end = start + len(name)
            a, b = _sentence_bounds(low, start, end, _REACH)
            severity = _shadow_severity(low[a:start] + _T_CHAR + low[end:b])
            if severity is not None:
                yield severity, start, end


@functools.lru_cache(maxsize=64)
def _name_index(names: frozenset[str]) -> tuple[tuple[str, frozenset[str], bool], ...]:
    """(lowercased name, its words, plain), sorted. A plain name is a lowercase word ("search") that
    ordinary prose uses too, so it counts only quoted or followed by "tool"."""
    index = [
        (n.lower(), frozenset(n.lower().translate(_WORD_SPLIT).split()), n.isalpha() and n[1:] == n[1:].lower())
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
    if _DISMISS.search(sentence) or (_INSTEAD.search(sentence) and _INSIST.search(sentence)):
        return "high"
    conditional = _CONDITIONAL.search(sentence) is not None
    modal = _MODAL.search(sentence) is not None
    if not (conditional or modal):
        return None  # "use list_orders to find the id" is ordinary
    if _TAMPER.search(sentence) or (conditional and modal and _DATA_MOVE.search(sentence)):
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

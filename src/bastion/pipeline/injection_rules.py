"""What counts as an instruction aimed at the model: the rule tables `bastion.pipeline.injection` applies.

Phrase rules with their trigger words, secret-file and secret patterns, destinations, the shadowing
patterns, `HIDDEN_CHARACTERS`; `bastion.pipeline.injection.scan_text` reads a text and applies them.
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
- unscanned (low): the text is longer than `injection.MAX_SCAN` characters; the rest was not read.

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

import re
from typing import Literal

__all__ = [
    "CONDITIONAL",
    "CONTEXT_HEADS",
    "COPY_TO",
    "COPY_WORDS",
    "DATA_MOVE",
    "DESTINATION",
    "DIRECTIVE",
    "DISMISS",
    "FILE_EXT",
    "GATES",
    "GIVE",
    "HIDDEN_CHARACTERS",
    "IMAGE_EXFIL",
    "INSIST",
    "INSTEAD",
    "KEY_FILES",
    "MARKS",
    "MODAL",
    "NOT_A_SECRET_AFTER",
    "NOT_A_SECRET_BEFORE",
    "OWNER",
    "PATHS",
    "PATH_WORDS",
    "QUOTES",
    "RULES",
    "SECRET_HEADS",
    "SHOW",
    "STEM",
    "STRONG_STEMS",
    "TAGS",
    "TAKE",
    "TAMPER",
    "THEN_GIVE",
    "TRIGGERS",
    "TRIGGER_WORDS",
    "T_CHAR",
    "WEAK_STEMS",
    "WORD_SPLIT",
    "Head",
    "Severity",
]

Severity = Literal["low", "high"]


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
TAGS = re.compile("[\U000e0020-\U000e007e]")  # the ones that mirror printable ASCII
QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})
# A text's words: what is left between ASCII punctuation and whitespace ("~/.ssh/id_rsa": ssh, id, rsa).
WORD_SPLIT = str.maketrans({c: " " for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"})
MARKS = ("<", "[", "#", "![", "@")  # triggers that are not words

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
TRIGGERS: dict[str, list[_Entry]] = {}
for _entry in _PHRASES:
    for _word in _entry[0]:
        TRIGGERS.setdefault(_word, []).append(_entry)
TRIGGER_WORDS = frozenset(TRIGGERS)
RULES = ("hidden_characters", "instruction_override", "secrecy", "markup_directive", "credential_reference",
          "exfiltration", "tool_shadowing", "instruction")  # fmt: skip

# Secret files. The strong ones are high alone; the others with a verb that moves data or a destination.
PATH_WORDS = frozenset(
    "ssh gnupg aws azure kube docker netrc credentials gcloud bash zsh env npmrc pypirc json yaml yml toml ini pem "
    "p12 pfx kdbx ppk dat rsa dsa ecdsa ed25519 shadow sudoers passwd".split()
)
_DOT_PATH = re.compile(
    r"\.(?<![\w.-]\.)(?:(?P<strong>ssh|gnupg|aws/credentials|aws/config|azure|kube/config|docker/config\.json|netrc"
    r"|git-credentials|config/gcloud|bash_history|zsh_history)|env(?:\.[a-z]+)?|npmrc|pypirc)\b(?:/[\w.-]+)?"
)
PATHS = (
    _DOT_PATH,
    re.compile(r"id_(?<![\w-]id_)(?P<strong>rsa|dsa|ecdsa|ed25519)\b(?:\.pub)?"),
    re.compile(r"/etc/(?:(?P<strong>shadow|sudoers)|passwd)\b"),
)
FILE_EXT = re.compile(r"\.(?<=[\w-]\.)(?:json|ya?ml|toml|ini|pem|p12|pfx|kdbx|ppk|dat)\b")
STEM = re.compile(r"[\w-]+$")
STRONG_STEMS = frozenset({"mcp", "claude_desktop_config", "application_default_credentials", "wallet"})
WEAK_STEMS = frozenset({"credentials", "secrets", "secret"})
KEY_FILES = frozenset({".pem", ".p12", ".pfx", ".kdbx", ".ppk"})

# Secrets and context data by their last word: (trigger words, pattern, words allowed just before
# it (None: any, but not glued to it), high with any verb).
Head = tuple[tuple[str, ...], re.Pattern[str], frozenset[str] | None, bool]


def _head(triggers: str, pattern: str, allowed: str | None, high: bool = False) -> Head:
    before = None if allowed is None else frozenset(allowed.split())
    return tuple(triggers.split()), re.compile(pattern + r"\b"), before, high


SECRET_HEADS = (
    _head("password passwords passphrase passphrases passwd", "pass(?:words?|phrases?|wd)", None),
    _head(
        "key keys apikey apikeys",
        "keys?",
        "api apikey apikeys access secret private ssh signing encryption gpg pgp master",
    ),
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
CONTEXT_HEADS = (
    _head("history", "history", "conversation chat message messages"),
    _head("conversation conversations", "conversations?", "entire whole full previous prior earlier"),
    _head("context", "context", "entire whole full"),
    _head("messages", "messages", "previous prior earlier preceding"),
    _head("prompt", "prompt", "system initial original hidden", high=True),
    _head("instructions", "instructions", "system initial original hidden", high=True),
)
NOT_A_SECRET_BEFORE = frozenset({"reset", "temporary", "new", "initial", "time", "generated", "random", "public"})
NOT_A_SECRET_AFTER = re.compile(
    r"[ _-]?(?:reset|polic|strength|expir|rotation|hint|rules|requirement|complexity|change|length|field|manager"
    r"|hash|protected|form|ids?\b|name|type|provider|store|vault|metadata|less)"
)
_GIVE_VERBS = "send|include|pass|forward|append|attach|copy|upload|post|leak|embed|exfiltrate|share|transmit|paste|put"
GIVE = re.compile(rf"\b(?:{_GIVE_VERBS}|insert|add|email)(?:s|es|ed|ing)?\b")
TAKE = re.compile(rf"\b(?:{_GIVE_VERBS}|insert|add|email|read|cat|extract|collect|gather|harvest|steal|dump|grab"
                  r"|retrieve|fetch|look\s+up)(?:s|es|ed|ing)?\b")  # fmt: skip
SHOW = re.compile(rf"\b(?:{_GIVE_VERBS}|insert|add|email|print|output|reveal|repeat|disclose|show)(?:s|es|ed|ing)?\b")
THEN_GIVE = re.compile(rf"\b(?:and|then)\s+(?:\w+\s+)?(?:{_GIVE_VERBS}|insert|add)(?:s|es)?\s+(?:it|them|its|their"
                       r"|this|that|the\s+(?:value|contents?))\b")  # fmt: skip
OWNER = re.compile(r"\b(?:user's|users'|their|his|her|all|any|every|stored|saved|cached|local|existing|other)\s")
_EMAIL = r"[\w.+-]{1,64}@[\w-]{1,63}\.[a-z]{2,24}"  # bounded: no long backtracking in a hostile text
DESTINATION = re.compile(
    r"\b(?:as|in|into|inside|within|to|under|via)\s+(?:the\s+|a\s+|an\s+|its\s+|this\s+|that\s+)?(?:['\"`][\w .-]{1,40}"
    r"['\"`]|(?:[\w.-]{1,40}\s+)?(?:parameter|param|argument|arg|field|property|input)\b)"
    rf"|https?://|{_EMAIL}|\bsidenote\b"
)
IMAGE_EXFIL = re.compile(  # ![x](https://host/p?q={conversation}): the client fetches it, the data leaves
    r"!\[[^\]\n]{0,100}\]\(\s*https?://[^)\s]{1,300}?[?&=/]"
    r"(?:\{[^}\s]{1,40}\}|\$\{?\w|<[^>\s]{1,40}>|\[[a-z_ ]{1,40}\])"
)

# Shadowing: in the sentence of a mention, the other tool's name is replaced by T_CHAR first.
T_CHAR = "\ue000"
_T = rf"(?:the\s+)?[`'\"]?{T_CHAR}[`'\"]?(?:\s+(?:tool|function))?"
DISMISS = re.compile(
    rf"(?:do\s+not|don't|never|avoid|stop)\s+(?:use|using|call|calling|invoke|invoking|trust|run|running)\s+{_T}"
    rf"|{_T}\s+(?:is|has\s+been|was)\s+(?:now\s+)?(?:deprecated|broken|disabled|unsafe|insecure|compromised"
    r"|unreliable|replaced|no\s+longer\s+\w+)"
)
# "Instead of X" alone is routing advice ("above 500 EUR, call escalate instead of refund_order");
# insisted on, a hijack ("this tool must be used instead of read_file").
INSTEAD = re.compile(rf"(?:instead\s+of|rather\s+than|in\s+place\s+of)\s+(?:using\s+|calling\s+)?{_T}")
INSIST = re.compile(r"\b(?:must|always|only|never)\b")
CONDITIONAL = re.compile(rf"\b(?:when|whenever|before|after|each\s+time|every\s+time|any\s+time|if|once)\b"
                         rf"[^,.;:!?\n]{{0,60}}?{T_CHAR}")  # fmt: skip
MODAL = re.compile(r"\b(?:must|should|shall|always|never|make\s+sure|ensure|also|additionally|instead|remember)\b")
TAMPER = re.compile(
    r"\b(?:bcc|cc|blind\s+copy|recipients?|redirect|reroute|(?:forward|send)\s+(?:a\s+)?cop(?:y|ies)"
    r"|(?:change|replace|modify|override|alter|rewrite)\s+(?:the\s+|its\s+|any\s+)?(?:\w+\s+)?(?:parameters?"
    r"|arguments?|inputs?|recipients?|address(?:es)?|destination|url|amount|account|path|query)"
    rf"|(?:all|every)\s+(?:emails?|messages?|payments?|transfers?|requests?)\s+(?:must|should|to)|to\s+{_EMAIL})\b"
)
DATA_MOVE = re.compile(r"\b(?:include|add|append|send|forward|copy|pass|attach|set|insert|change|replace)\b")
COPY_TO = (
    re.compile(rf"cc(?<![ac-z0-9_]cc)\b[^.!?\n]{{0,40}}?{_EMAIL}"),
    *(entry[3] for entry in _words("copy copies", "", "high", rf"\s+(?:of\s+(?:\w+\s+){{1,3}})?to\s+{_EMAIL}")),
)
COPY_WORDS = frozenset({"cc", "bcc", "copy", "copies"})
DIRECTIVE = re.compile(r"\b(?:always|also|must|should|make\s+sure|secretly|silently|quietly)\b")

# Every word some rule starts from: a text holding none of them is done once its words are known.
GATES = TRIGGER_WORDS | PATH_WORDS | COPY_WORDS | {"!["} | {w for h in SECRET_HEADS + CONTEXT_HEADS for w in h[0]}

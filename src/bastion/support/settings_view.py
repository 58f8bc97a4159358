"""Settings as the support bundle shows them: every field, each secret replaced by "<redacted>".

Which fields hold secrets is declared once, on the fields themselves (`bastion.config`): a
`SecretStr` anywhere in a value (also an OpenID provider's client_secret), `{"secret": True}`
for a secret kept as a plain string, `{"secret": "url"}` for URLs whose password is secret
while scheme, host, port and database name are what support needs. A set secret shows as
"<redacted>", an unset one as null, so support sees whether it is configured. The strings of
every other field pass through the text redactor all the same: a token pasted into a stdio
command's arguments is not shown either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, SecretStr, ValidationError

from bastion.config import Settings
from bastion.observability.redact import REDACTED, looks_secret, redact_text, redact_url

__all__ = ["SecretKind", "secret_fields", "settings_failure", "settings_view"]

SecretKind = Literal["value", "url"]
_ENV_PREFIX = "BASTION_"


def secret_fields() -> dict[str, SecretKind]:
    """Every Settings field that holds a secret, and how it is redacted."""
    kinds: dict[str, SecretKind] = {}
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("secret") == "url":
            kinds[name] = "url"
        elif extra.get("secret") is True or _mentions_secret_str(field.annotation):
            kinds[name] = "value"
    return kinds


def settings_view(settings: Settings) -> dict[str, Any]:
    """config.json: the settings (redacted), which were set explicitly, what derives from them,
    and BASTION_* variables no setting reads (a typo there is silently ignored at start)."""
    kinds = secret_fields()
    shown: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if kinds.get(name) == "value":
            shown[name] = None if value is None else REDACTED
        else:
            shown[name] = _shown(value, redact_url if kinds.get(name) == "url" else redact_text)
    return {
        "settings": shown,
        "set_explicitly": sorted(settings.model_fields_set),
        "derived": {
            "base_url": redact_url(settings.base_url()),
            "tls": settings.tls,
            "audit_journal_dir": str(settings.audit_journal_path()),
        },
        "unrecognised_environment": sorted(set(_environment_names()) - {_ENV_PREFIX + n.upper() for n in shown}),
    }


def settings_failure(error: ValidationError | ValueError) -> dict[str, Any]:
    """config.json when the settings do not validate: the problems (redacted) and the names of the
    BASTION_* variables set, never their values."""
    if isinstance(error, ValidationError):
        problems = [
            f"{'.'.join(str(part) for part in problem['loc']) or 'settings'}: {problem['msg']}"
            for problem in error.errors(include_input=False, include_url=False)
        ]
    else:
        problems = [str(error)]
    return {"error": [redact_text(problem) for problem in problems], "environment": _environment_names()}


def _shown(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, BaseModel):
        return _shown(value.model_dump(), redact)
    if isinstance(value, Mapping):
        return {_shown(key, redact): _shown(item, redact) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = list(value)
        # An argv (a stdio command): the word after `--password`, `--api-key`... is the secret.
        return [
            REDACTED if index and _secret_option(items[index - 1]) else _shown(item, redact)
            for index, item in enumerate(items)
        ]
    if isinstance(value, str | Path):
        return redact(str(value))
    return value  # numbers, booleans, None


def _secret_option(item: object) -> bool:
    return isinstance(item, str) and item.startswith("-") and "=" not in item and looks_secret(item)


def _mentions_secret_str(annotation: Any) -> bool:
    return annotation is SecretStr or any(_mentions_secret_str(arg) for arg in get_args(annotation))


def _environment_names() -> list[str]:
    return sorted(name for name in os.environ if name.upper().startswith(_ENV_PREFIX))

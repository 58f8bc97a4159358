"""Console forms: read a posted form (CSRF checked first), turn validation errors into inline messages."""

from __future__ import annotations

import re
from typing import Any

from fastapi import Request
from pydantic import ValidationError

from bastion.console.viewer import Viewer, check_csrf
from bastion.errors import BastionError

__all__ = ["VISIBILITIES", "FormData", "field_errors", "lines", "listed", "placement", "read_form", "refusal", "slugs"]

FormData = dict[str, Any]  # one value per field, or a list where the field repeats


async def read_form(request: Request, viewer: Viewer) -> FormData:
    form = await request.form()
    check_csrf(viewer, form.get("csrf"))
    data: FormData = {}
    for key in form:
        values = [v for v in form.getlist(key) if isinstance(v, str)]
        if key != "csrf":
            data[key] = values[0] if len(values) == 1 else values
    return data


def listed(data: FormData, key: str) -> list[str]:
    """A field that may repeat (checkboxes, multi-selects), as a list; absent: empty."""
    value = data.get(key)
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def lines(data: FormData, key: str) -> list[str]:
    """A textarea holding one entry per line (blank lines dropped)."""
    value = data.get(key, "")
    text = "\n".join(value) if isinstance(value, list) else str(value)
    return [line.strip() for line in text.splitlines() if line.strip()]


def slugs(data: FormData, key: str) -> list[str]:
    """Ticked boxes, or names typed into one field separated by spaces or commas."""
    return [slug for value in listed(data, key) for slug in re.split(r"[\s,]+", value) if slug]


VISIBILITIES = ("tenant", "team", "private")


def placement(data: FormData) -> dict[str, Any]:
    """The visibility fields of an origin or server form: teams count only for team visibility."""
    visibility = data.get("visibility") or "tenant"
    return {"visibility": visibility, "team_ids": lines(data, "teams") if visibility == "team" else []}


def field_errors(error: ValidationError) -> dict[str, str]:
    """{field: message} for the form, under the top-level field's name and under the full path
    (`auth.token`, `scopes.0`); errors of the whole model under "_". The forms' `teams` field
    is the models' `team_ids`."""
    errors: dict[str, str] = {}
    for problem in error.errors():
        location = [str(part) for part in problem["loc"]]
        message = str(problem["msg"]).removeprefix("Value error, ")
        for key in {".".join(location) or "_", location[0] if location else "_"}:
            errors.setdefault(key, message)
    if "team_ids" in errors:
        errors.setdefault("teams", errors["team_ids"])
    return errors


def refusal(error: ValidationError | BastionError) -> dict[str, str]:
    """Why a form was refused: the model's messages by field, or the control plane's under "_"."""
    return field_errors(error) if isinstance(error, ValidationError) else {"_": error.message}

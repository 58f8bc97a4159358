"""Which resource template a `resources/read` URI goes to: one it matches as a whole (RFC 6570,
the SDK's matcher), never one whose literal prefix it merely starts with, and never for a
resource the view withholds (quarantined, or denied to this member)."""

from __future__ import annotations

from bastion.catalog.snapshot import Route, ServerView


def _template(text: str) -> Route:
    return Route("o1", "resource_template", text, text, {"uriTemplate": text, "name": text})


def _view(
    *templates: str,
    quarantined: frozenset[tuple[str, str]] = frozenset(),
    denied: frozenset[tuple[str, str]] = frozenset(),
) -> ServerView:
    return ServerView(
        "s1", "docs", "Docs", "", True,
        templates=tuple(_template(t) for t in templates), quarantined=quarantined, denied=denied,
    )  # fmt: skip


def test_a_uri_goes_to_the_template_it_matches_as_a_whole() -> None:
    view = _view("file:///docs/{name}", "file:///docs/{+path}", "crm://contacts/{id}{?fields}")
    assert view.template_for("file:///docs/readme.txt").upstream_name == "file:///docs/{name}"  # type: ignore[union-attr]
    # {name} stops at a slash; {+path} takes it: the longest literal prefix among those that match.
    assert view.template_for("file:///docs/a/b.txt").upstream_name == "file:///docs/{+path}"  # type: ignore[union-attr]
    assert view.template_for("crm://contacts/42?fields=name").upstream_name == "crm://contacts/{id}{?fields}"  # type: ignore[union-attr]


def test_a_uri_that_only_starts_like_a_template_goes_nowhere() -> None:
    view = _view("crm://contacts/{id}")
    assert view.template_for("crm://contacts/42/notes") is None  # the prefix matched; the template does not
    assert view.template_for("crm://contact/42") is None
    assert view.template_for("file:///etc/shadow") is None


def test_a_withheld_resource_is_no_templates_even_when_one_matches_it() -> None:
    view = _view(
        "file:///{+path}",
        quarantined=frozenset({("resource", "file:///etc/secret")}),
        denied=frozenset({("resource", "file:///payroll.csv")}),
    )
    assert view.template_for("file:///notes.txt") is not None
    assert view.template_for("file:///etc/secret") is None  # refused as itself: quarantined
    assert view.template_for("file:///payroll.csv") is None  # refused as itself: forbidden


def test_a_template_the_sdk_cannot_read_matches_nothing_and_a_completion_names_one_exactly() -> None:
    view = _view("bad://{a}{b}", "crm://contacts/{id}")
    assert view.template_for("bad://xy") is None
    assert view.template_named("crm://contacts/{id}").upstream_name == "crm://contacts/{id}"  # type: ignore[union-attr]
    assert view.template_named("crm://contacts/42") is None


def test_a_withheld_resource_spelled_another_way_is_still_withheld() -> None:
    view = _view("file:///{+path}", "File://Host/{+path}", denied=frozenset({("resource", "file:///payroll.csv")}))
    for spelling in (
        "file:///payroll%2Ecsv",
        "file:///./payroll.csv",
        "file:///a/../payroll.csv",
        "FILE:///payroll.csv",
    ):
        assert view.withholds(spelling), spelling
        assert view.template_for(spelling) is None, spelling
    assert not view.withholds("file:///payroll.csv.bak")
    assert view.template_for("file:///notes/./today.txt") is not None


def test_a_concrete_resource_spelled_another_way_is_still_itself_not_a_templates() -> None:
    """Its own route (and so its own policies: DLP, limits, Cedar's resource id), not the broad
    template's that the other spelling also matches."""
    concrete = Route("o1", "resource", "file:///etc/secret", "file:///etc/secret", {"uri": "file:///etc/secret"})
    view = ServerView(
        "s1", "docs", "Docs", "", True,
        resources={"file:///etc/secret": concrete}, templates=(_template("file:///{+path}"),),
    )  # fmt: skip
    for spelling in ("file:///etc/secret", "file:///etc/./secret", "file:///etc/%73ecret", "FILE:///etc/x/../secret"):
        assert view.resource_for(spelling) is concrete, spelling
    assert view.resource_for("file:///etc/other") is None

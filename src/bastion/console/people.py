"""Users, teams and roles in the console: one page at /admin/users, through the same control-plane
objects and permissions as /api/users, /api/teams and /api/roles.

Reading the page needs `users:read`; creating, editing and unlocking users and managing teams need
`users:manage`; creating and deleting custom roles need `roles:manage`. Each form that fails shows
its errors inline (422) and writes nothing; each that succeeds redirects back with a fixed notice.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from bastion.admin.deps import governance_of, users_of
from bastion.admin.governance import Governance, RoleIn, TeamIn, TeamMembersIn
from bastion.admin.schemas import UserIn, UserOut, UserPatch
from bastion.console.forms import FormData, field_errors, lines, listed, read_form, refusal
from bastion.console.render import page
from bastion.console.route import ConsoleRoute
from bastion.console.viewer import CurrentViewer, Viewer
from bastion.errors import BastionError, NotFound
from bastion.governance.permissions import parse_permission

__all__ = ["router"]

router = APIRouter(prefix="/admin", route_class=ConsoleRoute, include_in_schema=False)

_NOTICES = {
    "user-created": "The user is created.",
    "user-saved": "The user's roles and teams are saved: they apply from the user's next request.",
    "unlocked": "The account is unlocked: its failed sign-ins are forgotten.",
    "team-created": "The team is created.",
    "team-saved": "The team's members are saved.",
    "team-deleted": "The team is deleted.",
    "role-created": "The role is created.",
    "role-deleted": "The role is deleted: whoever held it lost what it granted.",
}

Values = dict[str, FormData]  # per form on the page ("user", "team", "team:<id>", "role")
Errors = dict[str, dict[str, str]]


def _back(notice: str, section: str = "") -> RedirectResponse:
    return RedirectResponse(f"/admin/users?notice={notice}{section}", status_code=303)


async def _page(
    request: Request, viewer: Viewer, *, values: Values | None = None, errors: Errors | None = None, status: int = 200
) -> Response:
    actor = viewer.actor("users:read")
    users = await users_of(request).list(actor)
    governance = governance_of(request)
    teams = await governance.list_teams(actor)
    now = datetime.now(UTC)
    usernames = {user.id: user.username for user in users}
    return page(
        request,
        "people.html",
        viewer=viewer,
        status=status,
        notices=_NOTICES,
        users=users,
        locked={user.id for user in users if user.locked_until is not None and user.locked_until > now},
        teams=teams,
        team_names={team.id: team.name for team in teams},
        team_members={team.id: "\n".join(usernames.get(m, m) for m in team.members) for team in teams},
        usernames=usernames,
        roles=await governance.list_roles(actor),
        permissions=Governance.permissions(),
        may_manage=viewer.may("users:manage"),
        may_roles=viewer.may("roles:manage"),
        values={"user": {"roles": ["member"]}, **(values or {})},
        errors=errors or {},
    )


@router.get("/users")
async def people(request: Request, viewer: CurrentViewer) -> Response:
    return await _page(request, viewer)


# --- users ----------------------------------------------------------------------------------------


@router.post("/users")
async def create_user(request: Request, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("users:manage")
    form = await read_form(request, viewer)
    try:
        data = UserIn(
            username=form.get("username", ""),
            password=form.get("password", ""),
            roles=listed(form, "roles"),
            teams=listed(form, "teams"),
        )
        await users_of(request).create(actor, data)
    except (ValidationError, BastionError) as error:
        problems = refusal(error)
        shown = {key: value for key, value in form.items() if key != "password"}  # never echoed back
        shown.update(roles=listed(form, "roles"), teams=listed(form, "teams"))
        return await _page(request, viewer, values={"user": shown}, errors={"user": problems}, status=422)
    return _back("user-created")


async def _user(request: Request, viewer: Viewer, user_id: str) -> UserOut:
    for user in await users_of(request).list(viewer.actor("users:read")):
        if user.id == user_id:
            return user
    raise NotFound(f"no user {user_id!r}")


async def _edit_page(
    request: Request,
    viewer: Viewer,
    user: UserOut,
    *,
    values: FormData | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    actor = viewer.actor("users:manage")
    governance = governance_of(request)
    teams = await governance.list_teams(actor)
    names = {team.id: team.name for team in teams}
    return page(
        request,
        "user_edit.html",
        viewer=viewer,
        status=status,
        user=user,
        roles=await governance.list_roles(actor),
        teams=teams,
        values=values or {"roles": user.roles, "teams": [names.get(t, t) for t in user.teams]},
        errors=errors or {},
    )


@router.get("/users/{user_id}/edit")
async def edit_user(user_id: str, request: Request, viewer: CurrentViewer) -> Response:
    viewer.actor("users:manage")
    return await _edit_page(request, viewer, await _user(request, viewer, user_id))


@router.post("/users/{user_id}/edit")
async def save_user(user_id: str, request: Request, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("users:manage")
    form = await read_form(request, viewer)
    user = await _user(request, viewer, user_id)
    try:
        # The form shows every role and team: a box left unticked means "not this one".
        data = UserPatch(roles=listed(form, "roles"), teams=listed(form, "teams"))
        await users_of(request).update(actor, user_id, data)
    except (ValidationError, BastionError) as error:
        problems = refusal(error)
        values = {"roles": listed(form, "roles"), "teams": listed(form, "teams")}
        return await _edit_page(request, viewer, user, values=values, errors=problems, status=422)
    return _back("user-saved")


@router.post("/users/{user_id}/unlock")
async def unlock_user(user_id: str, request: Request, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("users:manage")
    await read_form(request, viewer)
    await users_of(request).unlock(actor, user_id)
    return _back("unlocked")


# --- teams ----------------------------------------------------------------------------------------


@router.post("/users/teams")
async def create_team(request: Request, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("users:manage")
    form = await read_form(request, viewer)
    try:
        data = TeamIn(name=form.get("name", ""), members=lines(form, "members"))
        await governance_of(request).create_team(actor, data)
    except (ValidationError, BastionError) as error:
        problems = refusal(error)
        return await _page(request, viewer, values={"team": form}, errors={"team": problems}, status=422)
    return _back("team-created", "#teams")


@router.post("/users/teams/{team_id}/members")
async def save_team(team_id: str, request: Request, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("users:manage")
    form = await read_form(request, viewer)
    try:
        data = TeamMembersIn(members=lines(form, "members"))
        await governance_of(request).set_team_members(actor, team_id, data)
    except (ValidationError, BastionError) as error:
        problems = refusal(error)
        key = f"team:{team_id}"
        return await _page(request, viewer, values={key: form}, errors={key: problems}, status=422)
    return _back("team-saved", "#teams")


@router.post("/users/teams/{team_id}/delete")
async def delete_team(team_id: str, request: Request, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("users:manage")
    await read_form(request, viewer)
    await governance_of(request).delete_team(actor, team_id)
    return _back("team-deleted", "#teams")


# --- roles ----------------------------------------------------------------------------------------


def _permission_problem(texts: list[str]) -> str | None:
    """The first line the role would be refused for, by the same parser that checks it."""
    for text in texts:
        try:
            parse_permission(text)
        except BastionError as error:
            return error.message
    return None


@router.post("/users/roles")
async def create_role(request: Request, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("roles:manage")
    form = await read_form(request, viewer)
    try:
        data = RoleIn(
            name=form.get("name", ""), description=form.get("description", ""), permissions=lines(form, "permissions")
        )
        wrong = _permission_problem(data.permissions)
        if wrong is None:
            await governance_of(request).create_role(actor, data)
            return _back("role-created", "#roles")
        problems = {"permissions": wrong}
    except ValidationError as error:
        problems = field_errors(error)
    except BastionError as error:
        problems = {"_": error.message}
    return await _page(request, viewer, values={"role": form}, errors={"role": problems}, status=422)


@router.post("/users/roles/{name}/delete")
async def delete_role(name: str, request: Request, viewer: CurrentViewer) -> Response:
    actor = viewer.actor("roles:manage")
    await read_form(request, viewer)
    await governance_of(request).delete_role(actor, name)
    return _back("role-deleted", "#roles")

"""Who is looking at the console: the signed-in person, their roles, and the CSRF token of their session.

The console signs people in with the same session cookie as the auth-session API
(`bastion.web.session_api`: HttpOnly, SameSite=Strict, Secure under TLS). Each
request reads the member from a snapshot confirmed current, exactly as the admin
API does, so a role removed on another replica is refused on the next page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from bastion.admin.actor import Actor
from bastion.audit.sink import note
from bastion.catalog.holder import SnapshotHolder
from bastion.errors import BastionError, Forbidden, Unauthenticated, Unavailable
from bastion.governance.access import Member
from bastion.identity.tokens import same_secret
from bastion.web.authserver import AuthServer
from bastion.web.session_api import renewed_session, session_claims, session_csrf

__all__ = ["CurrentViewer", "SignInNeeded", "Viewer", "check_csrf"]


class SignInNeeded(Unauthenticated):
    """No valid console session: the console answers with a redirect to its sign-in page."""


@dataclass(frozen=True, slots=True)
class Viewer:
    user_id: str
    username: str
    member: Member
    csrf: str

    def may(self, action: str) -> bool:
        try:
            return self.member.may(action)
        except Exception:  # deny when a decision cannot be made
            return False

    def actor(self, action: str) -> Actor:
        """The control-plane actor for one page or form; Forbidden unless a role grants `action`."""
        if not self.may(action):
            raise Forbidden(f"this page needs the permission {action!r}, which your roles do not grant")
        return Actor(username=self.username, user_id=self.user_id, tenant_id=self.member.tenant_id, member=self.member)


async def current_viewer(request: Request) -> Viewer:
    auth: AuthServer = request.app.state.auth
    try:
        claims = await session_claims(request, auth)
    except Unavailable:
        raise  # the store cannot say whether the session was signed out: 503, not a sign-in page
    except BastionError:
        raise SignInNeeded("sign in to use the console") from None
    holder: SnapshotHolder = request.app.state.holder
    snapshot = await holder.checked()
    member = snapshot.members.get(claims["sub"])
    if member is None:  # removed, disabled or moved since signing in
        raise SignInNeeded("your account is no longer active here; sign in again")
    note(request.scope, principal=member.user_id, tenant=member.tenant_id)
    # The name as it is now, not the session's claim (the name it began with, which a rename can
    # have given to someone else since): what the console records as who did what.
    viewer = Viewer(claims["sub"], member.username, member, session_csrf(claims))
    request.state.console_viewer = viewer  # for the error page's navigation
    # A session in use is renewed (ConsoleRoute sets the cookie on whatever the page answers).
    request.state.renewed_session = renewed_session(auth, claims)
    return viewer


CurrentViewer = Annotated[Viewer, Depends(current_viewer)]


def check_csrf(viewer: Viewer, token: object) -> None:
    """Every console form carries the session's CSRF token (a hash of the session's id)."""
    if not isinstance(token, str) or not same_secret(token, viewer.csrf):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and submit it again")

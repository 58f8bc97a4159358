"""Errors on console routes become pages: sign-in redirects, 403/404/409 pages, 422 for bad links.

The admin API maps `BastionError` to JSON in `bastion.http.errors`; a browser
deserves a page instead, with the same status and message. This is the one
place that mapping happens for the console.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from bastion.audit.sink import note
from bastion.console.render import page
from bastion.console.viewer import SignInNeeded
from bastion.errors import BastionError
from bastion.web.cookies import cookie_name
from bastion.web.session_api import SESSION_COOKIE, set_session_cookie

__all__ = ["ConsoleRoute"]


def _error_page(request: Request, status: int, message: str) -> Response:
    viewer = getattr(request.state, "console_viewer", None)  # known once the session was read
    return page(request, "error.html", viewer=viewer, status=status, message=message)


def _sets_session(response: Response, issuer: str) -> bool:
    name = cookie_name(SESSION_COOKIE, issuer)
    return any(value.startswith(f"{name}=") for value in response.headers.getlist("set-cookie"))


class ConsoleRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            response = await answer(request)
            renewed = getattr(request.state, "renewed_session", None)  # set by the viewer dependency
            # Not over a session cookie the page set or ended itself: a sign-out's deletion must stand.
            auth = request.app.state.auth
            if renewed is not None and not _sets_session(response, auth.issuer):
                set_session_cookie(response, auth, renewed)
            return response

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInNeeded as error:
                note(request.scope, reason=error.message)
                if request.method != "GET":
                    return _error_page(request, 401, "your session has ended: sign in again")
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(f"/admin/login?next={quote(target, safe='')}", status_code=303)
            except BastionError as error:
                note(request.scope, reason=error.message)  # for the request's audit record
                response = _error_page(request, error.http_status, error.message)
                retry_after = getattr(error, "retry_after", None)
                if retry_after is not None:
                    response.headers["retry-after"] = str(retry_after)
                return response
            except RequestValidationError as error:
                fields = sorted({".".join(map(str, e["loc"][1:])) for e in error.errors()})
                note(request.scope, reason="invalid fields: " + ", ".join(fields))  # names, never values
                problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:]))}: {e['msg']}" for e in error.errors())
                return _error_page(request, 422, f"this link or form is not valid ({problems})")
            except HTTPException as error:  # a body the form parser cannot read (malformed multipart)
                note(request.scope, reason=f"unreadable request ({error.status_code})")
                message = "this form could not be read: reload the page and try again"
                return _error_page(request, error.status_code, message)

        return console_handler

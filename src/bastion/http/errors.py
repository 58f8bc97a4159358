"""The one table from the error tree to HTTP responses of the control plane.

(The data plane renders the same errors as JSON-RPC in `bastion.mcp.jsonrpc`.)
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from bastion.audit.sink import note
from bastion.errors import AccountLocked, BastionError, TooManyRequests, Unauthenticated, Unavailable

__all__ = ["install_error_handlers"]


async def _bastion_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, BastionError)
    note(request.scope, reason=error.message)
    headers = {"www-authenticate": 'Bearer realm="bastion"'} if isinstance(error, Unauthenticated) else {}
    if isinstance(error, AccountLocked | TooManyRequests | Unavailable):
        headers["retry-after"] = str(error.retry_after)
    return JSONResponse(
        {"error": {"code": error.label, "message": error.message}}, status_code=error.http_status, headers=headers
    )


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    fields = [{"field": ".".join(str(p) for p in e["loc"] if p != "body"), "message": e["msg"]} for e in error.errors()]
    note(request.scope, reason="invalid fields: " + ", ".join(sorted({f["field"] for f in fields})))
    return JSONResponse(
        {"error": {"code": "validation_failed", "message": "the request has invalid fields", "fields": fields}},
        status_code=422,
    )


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 400: "bad_request", 413: "payload_too_large"}


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    note(request.scope, reason=str(error.detail))
    code = _HTTP_CODES.get(error.status_code, "http_error")
    return JSONResponse(
        {"error": {"code": code, "message": str(error.detail)}}, status_code=error.status_code, headers=error.headers
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(BastionError, _bastion_error)
    app.add_exception_handler(RequestValidationError, _validation_error)

"""The one place where domain errors become HTTP responses (JSON error bodies)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from service.errors import (
    Busy,
    ClientGone,
    DecodeFailed,
    Forbidden,
    InvalidOption,
    LimitExceeded,
    NotReady,
    ServiceError,
    Unauthorized,
)
from service.logs import request_id_var

log = logging.getLogger(__name__)

# error class -> (status, code, extra headers)
HTTP_ERRORS: dict[type[ServiceError], tuple[int, str, dict[str, str]]] = {
    LimitExceeded: (413, "limit_exceeded", {}),
    InvalidOption: (422, "invalid_option", {}),
    Unauthorized: (401, "unauthorized", {"WWW-Authenticate": "Bearer"}),
    Forbidden: (403, "forbidden", {}),
    NotReady: (503, "not_ready", {"Retry-After": "1"}),
    Busy: (503, "overloaded", {"Retry-After": "1"}),
    DecodeFailed: (500, "decode_failed", {}),
    ClientGone: (499, "client_closed_request", {}),  # nginx's code; only logs see it
}


def http_error(exc: ServiceError) -> tuple[int, str, dict[str, str]]:
    """(status, code, headers) of a domain error; its nearest mapped class decides."""
    for cls in type(exc).__mro__:
        if cls in HTTP_ERRORS:
            return HTTP_ERRORS[cls]
    return 500, "internal_error", {}


def error_response(status: int, code: str, message: str,
                   details: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message,
                            "request_id": request_id_var.get()}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def service_error_response(exc: ServiceError) -> JSONResponse:
    status, code, headers = http_error(exc)
    return error_response(status, code, exc.message, headers=headers or None)


def _validation_details(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
             "type": str(e.get("type", ""))} for e in exc.errors()]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return service_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = _validation_details(exc)
        first = details[0] if details else {"loc": [], "msg": "invalid request", "type": ""}
        if first["type"] == "json_invalid":  # not JSON at all: malformed, not invalid
            return error_response(400, "invalid_json", "request body is not valid JSON")
        where = ".".join(p for p in first["loc"] if p != "body") or "body"
        return error_response(422, "invalid_request", f"{where}: {first['msg']}", details)

    @app.exception_handler(HTTPException)
    async def http_exception(_: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not decode the body at all
            return error_response(400, "invalid_body", f"{exc.detail}: send a UTF-8 JSON "
                                  "object (Content-Type: application/json)")
        return error_response(exc.status_code, "http_error", str(exc.detail),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal_error",
                              "internal error; quote the request_id when reporting it")

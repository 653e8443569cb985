"""Optional API keys: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""

from __future__ import annotations

import hmac

from fastapi import Request

from service.errors import ServiceError


class Unauthorized(ServiceError):
    status, code = 401, "unauthorized"


class Forbidden(ServiceError):
    status, code = 403, "forbidden"


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("x-api-key")


def check_key(presented: str | None, keys: list[str]) -> None:
    """Raise 401 without a key and 403 with a wrong one; open when ``keys`` is empty.

    Every configured key is compared in constant time, so timing tells nothing about them.
    """
    if not keys:
        return
    if not presented:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or "
                           "'X-API-Key: <key>'", headers={"WWW-Authenticate": "Bearer"})
    given = presented.encode()
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(given, key.encode())
    if not matched:
        raise Forbidden("the API key is not valid")

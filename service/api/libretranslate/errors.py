"""LibreTranslate's error shape, ``{"error": "<message>"}``, for every error under the prefix.

Errors there arise where they arise elsewhere (body limits, connection cap, routing, domain
errors in handlers) and are first answered in the service's shape by
:mod:`service.api.errors`; this middleware rewrites them, choosing LibreTranslate's status
for each error code: 400 for a bad request or a limit, 403 for a wrong key, 429 when busy.
"""

from __future__ import annotations

import json
import logging

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

# service error code -> LibreTranslate status; codes not listed keep their status
STATUS = {"invalid_body": 400, "invalid_json": 400, "invalid_request": 400,
          "invalid_option": 400, "limit_exceeded": 400, "unauthorized": 400,
          "forbidden": 403, "overloaded": 429, "too_many_connections": 429}


def libre_body(status: int, message: str) -> bytes:
    if status == 429:  # LibreTranslate's wording for rate limits
        message = f"Slowdown: {message}"
    return json.dumps({"error": message}, ensure_ascii=False).encode()


class LibreErrors:
    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app, self.prefix = app, prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == self.prefix or
                                           path.startswith(self.prefix + "/")):
            await self.app(scope, receive, send)
            return
        start: Message | None = None  # an error's start, held until its body is complete
        body = bytearray()
        started = False

        async def rewrite(message: Message) -> None:
            nonlocal start, started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400:
                    start = message
                    return
            elif start is not None and message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
                if message.get("more_body", False):
                    return
                for reshaped_message in reshaped(start, bytes(body)):
                    await send(reshaped_message)
                return
            await send(message)

        try:
            await self.app(scope, receive, rewrite)
        except Exception:
            if started:
                raise
            log.exception("unhandled error")
            await Response(libre_body(500, "internal error; quote the X-Request-ID header "
                                      "when reporting it"), 500,
                           media_type="application/json")(scope, receive, send)


def reshaped(start: Message, body: bytes) -> tuple[Message, Message]:
    """The service's error (start, body) as LibreTranslate's; anything else unchanged."""
    try:
        error = json.loads(body)["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return start, {"type": "http.response.body", "body": body}
    status = STATUS.get(code) or int(start["status"])
    content = libre_body(status, message)
    headers = [(k, v) for k, v in start["headers"]
               if k.lower() not in (b"content-length", b"content-type", b"www-authenticate")]
    headers += [(b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode())]
    return ({"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": content})

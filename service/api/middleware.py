"""Pure-ASGI middleware: request id, access log, HTTP metrics and the body size limit."""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import paths
from service.api.errors import error_response, service_error_response
from service.auth import check_key
from service.errors import ServiceError
from service.logs import request_id_var
from service.metrics import Metrics

log = logging.getLogger("service.access")
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Metrics,
                 routes: frozenset[str] = frozenset(paths.LABELLED)) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # paths with their own metrics label; the rest are "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _VALID_ID.match(given) else uuid.uuid4().hex
        request_id_var.set(request_id)
        status, started_response = 500, False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        path = scope["path"]
        route = path if path in self.routes else "other"
        started = time.perf_counter()
        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        except asyncio.CancelledError:  # shutdown ran out of time: still answer, in JSON
            if not started_response:
                await error_response(
                    503, "shutting_down", "the service stopped before this request finished "
                    "(SERVICE_SHUTDOWN_TIMEOUT_S); retry", headers={"Retry-After": "1"},
                )(scope, receive, send_with_id)
            raise
        finally:
            seconds = time.perf_counter() - started
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(seconds)
            log.info("%s %s %d", scope["method"], path, status,
                     extra={"route": route, "status": status, "method": scope["method"],
                            "duration_ms": round(1000 * seconds, 2)})


class ApiKeys:
    """Check the API key of protected paths before anything reads the body, so a caller
    without a valid key learns that first (401/403), whatever it sent."""

    def __init__(self, app: ASGIApp, keys: list[str], paths: frozenset[str]) -> None:
        self.app, self.keys, self.paths = app, keys, paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.keys and self.keyed(scope["path"]):
            try:
                check_key(presented_key(Headers(scope=scope)), self.keys)
            except ServiceError as exc:
                await service_error_response(exc)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def keyed(self, path: str) -> bool:
        """One of ``paths``, or a model's page under one (``/models/<id>``; the admin
        actions below it have keys of their own)."""
        head, _, rest = path.rpartition("/")
        return path in self.paths or (head in self.paths and "/" not in rest and bool(rest))


def presented_key(headers: Headers) -> str | None:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    header = headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return headers.get("x-api-key")


class BodyLimit:
    """Read the whole body before the app sees it: at most ``max_bytes`` (413, declared or
    streamed, chunked included) and within ``timeout_s`` (408), so a stalled client holds
    neither memory nor a decode slot, nor delays shutdown for longer than that."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send, 413, "limit_exceeded", self._too_large())
            return
        body, first = bytearray(), None
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":  # the client went away
                        first = message
                        break
                    body += message.get("body", b"")
                    if len(body) > self.max_bytes:
                        await self._refuse(scope, receive, send, 413, "limit_exceeded",
                                           self._too_large())
                        return
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            await self._refuse(scope, receive, send, 408, "body_timeout",
                               f"request body not received within {self.timeout_s:g} s "
                               "(SERVICE_BODY_TIMEOUT_S)")
            return
        replay: Message = first or {"type": "http.request", "body": bytes(body),
                                    "more_body": False}
        replayed = False

        async def buffered_receive() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return replay
            return await receive()

        await self.app(scope, buffered_receive, send)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, code: str,
                      message: str) -> None:
        # The rest of the body is not read: the connection closes after the answer.
        response = error_response(status, code, message, headers={"Connection": "close"})
        await response(scope, receive, send)

    def _too_large(self) -> str:
        return (f"request body is larger than {self.max_bytes} bytes "
                "(SERVICE_MAX_BODY_BYTES)")

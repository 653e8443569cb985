"""Limits at the connection level, where no application code runs yet.

uvicorn's httptools protocol (the C parser; with h11's pure-Python one the event loop was
the bottleneck at ~500 requests/s: BENCHMARKS.md, run 5), extended with what a
public-facing server needs and uvicorn lacks: a deadline for each request's head (a client
that trickles it, or sends nothing, is disconnected), a cap on its size however it arrives,
and JSON for what the parser rejects. The response to a refused head is written raw: the
parser's state cannot be trusted then. The number of open connections is shared with
:class:`ConnectionCap`, which answers 503 beyond the cap while health checks still get
through.
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service import paths
from service.api.errors import error_response

log = logging.getLogger("service.edge")


def edge_protocol(header_timeout_s: float, max_head_bytes: int, connections: set[Any]
                  ) -> type[HttpToolsProtocol]:
    """An HTTP protocol class that keeps ``connections`` up to date, gives every request
    ``header_timeout_s`` from connect (or from the previous response) to send its head, and
    refuses heads over ``max_head_bytes`` (431) however they arrive."""

    class EdgeProtocol(HttpToolsProtocol):
        _deadline: asyncio.TimerHandle | None = None
        _head_bytes = 0  # of the request head being received (while the deadline runs)
        _tail = b""  # the last bytes seen, to find a head's end across reads

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            connections.add(self)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._deadline is not None:  # between requests: data is a request head
                seen = self._tail + data
                end = seen.find(b"\r\n\r\n")
                self._head_bytes += len(data) if end < 0 else end + 4 - len(self._tail)
                self._tail = seen[-3:]
                if self._head_bytes > max_head_bytes:
                    self._send_error(431, "header_too_large", f"the request head is larger "
                                     f"than {max_head_bytes} bytes (SERVICE_MAX_HEADER_BYTES)")
                    return
            super().data_received(data)

        def connection_lost(self, exc: Exception | None) -> None:
            connections.discard(self)
            self._disarm()
            super().connection_lost(exc)

        def on_headers_complete(self) -> None:  # a request's head is complete
            super().on_headers_complete()
            self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request's headers get the same deadline

        def send_400_response(self, msg: str) -> None:  # uvicorn's parser refused the request
            self._send_error(400, "bad_request", f"malformed HTTP request: {msg}")

        def _send_error(self, status: int, code: str, message: str) -> None:
            body = json.dumps({"error": {"code": code, "message": message,
                                         "request_id": None}}).encode()
            headers = [(b"content-type", b"application/json"),
                       (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
            phrase = HTTPStatus(status).phrase.encode()
            self.transport.write(b"HTTP/1.1 %d %s\r\n" % (status, phrase)
                                 + b"".join(k + b": " + v + b"\r\n" for k, v in headers)
                                 + b"\r\n" + body)
            self.transport.close()

        def _arm(self) -> None:
            self._disarm()
            self._head_bytes, self._tail = 0, b""
            self._deadline = self.loop.call_later(header_timeout_s, self._headers_too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _headers_too_slow(self) -> None:
            if not self.transport.is_closing():
                log.info("closing a connection that sent no complete request head in %gs "
                         "(SERVICE_HEADER_TIMEOUT_S)", header_timeout_s)
                self.transport.close()

    return EdgeProtocol


class ConnectionCap:
    """503 (JSON, ``Retry-After``, connection closed) for requests arriving while more than
    ``limit`` connections are open; health checks are always answered."""

    def __init__(self, app: ASGIApp, connections: set[Any], limit: int) -> None:
        self.app, self.connections, self.limit = app, connections, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (scope["type"] == "http" and len(self.connections) > self.limit
                and scope["path"] not in paths.HEALTH):
            response = error_response(
                503, "too_many_connections", f"{len(self.connections)} connections are open; "
                f"the limit is {self.limit} (SERVICE_MAX_CONNECTIONS)",
                headers={"Retry-After": "1", "Connection": "close"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)

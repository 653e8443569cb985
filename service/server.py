"""The uvicorn server of one service process: `python -m service` with SERVICE_WORKERS=1, or one
of its workers."""

from __future__ import annotations

import asyncio
import logging
from types import FrameType

import uvicorn

from service.api.edge import edge_protocol
from service.app import create_app
from service.settings import Settings
from service.state import ServiceState
from service.workers import heartbeat, listening_socket, mark_ready, worker_index

log = logging.getLogger("service")


class GracefulServer(uvicorn.Server):
    """On SIGTERM/SIGINT, turn readiness off before uvicorn stops accepting connections.

    With ``SERVICE_SHUTDOWN_DELAY_S``, the server keeps accepting and serving that long first
    (for platforms without a preStop hook, while load balancers notice the readiness change).
    uvicorn then lets in-flight requests (queued ones included) finish, up to
    SERVICE_SHUTDOWN_TIMEOUT_S, and the app's shutdown drains the batcher. A second signal
    skips the delay.
    """

    def __init__(self, config: uvicorn.Config, state: ServiceState, delay_s: float) -> None:
        super().__init__(config)
        self.state, self.delay_s, self._signalled = state, delay_s, False

    async def on_tick(self, counter: int) -> bool:
        if counter % 10 == 0:  # every second (uvicorn ticks every 0.1 s)
            heartbeat()
        return await super().on_tick(counter)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.state.ready:
            log.info("signal %d: not ready any more, finishing in-flight requests", sig)
        self.state.ready, self.state.detail = False, "shutting down"
        self.state.metrics.ready.set(0)
        mark_ready(False)
        first, self._signalled = not self._signalled, True
        if first and self.delay_s > 0:
            log.info("still accepting requests for %gs (SERVICE_SHUTDOWN_DELAY_S)", self.delay_s)
            loop = asyncio.get_running_loop()
            loop.call_soon_threadsafe(loop.call_later, self.delay_s, super().handle_exit, sig,
                                      frame)
            return
        super().handle_exit(sig, frame)


def serve(settings: Settings) -> None:
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_config=None, access_log=False,
        http=edge_protocol(settings.header_timeout_s, settings.max_header_bytes,
                           app.state.connections),
        timeout_keep_alive=settings.keepalive_timeout_s,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s) or None)
    server = GracefulServer(config, app.state.service, settings.shutdown_delay_s)
    if worker_index() is None:
        server.run()
    else:  # one of SERVICE_WORKERS: its own socket on the shared port
        server.run(sockets=[listening_socket(settings.host, settings.port)])

"""A real uvicorn server process on a free port, started the way `make serve` starts it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import DEFAULT_BUNDLE, ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait(self, path: str, status: int, timeout: float = 60.0) -> httpx.Response:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()}")
            try:
                response = httpx.get(self.url + path, timeout=2)
                if response.status_code == status:
                    return response
                last = response.status_code
            except httpx.TransportError as exc:
                last = exc
            time.sleep(0.05)
        raise TimeoutError(f"{path} never answered {status} (last: {last}):\n{self.log()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def metric(server: Server, name: str) -> float:
    """A sample of the server's /metrics, summed over its labels (0 when absent)."""
    text = httpx.get(server.url + "/metrics", timeout=5).text
    found = re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return sum(float(value) for value in found)


def start_server(tmp: Path, bundle: Path | None = DEFAULT_BUNDLE, port: int | None = None,
                 **env: str) -> Server:
    """``python -m service`` on a free port, serving ``bundle`` (None: the repository
    SERVICE_MODEL_REPOSITORY names, models/ by default)."""
    port = port or free_port()
    log_path = tmp / f"server-{port}.log"
    environ = {k: v for k, v in os.environ.items() if k != "SERVICE_BUNDLE_DIR"}
    if bundle is not None:
        environ["SERVICE_BUNDLE_DIR"] = str(bundle)
    environ |= {"SERVICE_PORT": str(port), "SERVICE_HOST": "127.0.0.1",
                "PYTHONUNBUFFERED": "1", **env}
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT, env=environ,
                                   stdout=log, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", process, log_path)
    server.wait("/health/live", 200)
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"))
    try:
        srv.wait("/health/ready", 200)
        yield srv
    finally:
        srv.stop()


# The browser tests: Debian's chromium driven by Playwright. No sandbox (we run as root in a
# container), no GPU, and nothing that reaches the network.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium (``playwright.sync_api.Browser``); the modules using it skip, saying
    why, when playwright or chromium is missing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_ARGS)
        yield launched
        launched.close()

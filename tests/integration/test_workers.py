"""SERVICE_WORKERS=2: two server processes on one port under a supervisor, as `make serve`
starts them, against real processes and sockets."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEFAULT_BUNDLE, ROOT
from tests.integration.conftest import Server, metric, start_server

TEXTS = [f"Open the file number {n}" for n in range(40)]


def log_entries(server: Server) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def workers(server: Server) -> list[int]:
    """The supervisor's worker processes now."""
    found = []
    for task in Path(f"/proc/{server.process.pid}/task").iterdir():
        found += [int(pid) for pid in (task / "children").read_text().split()]
    return found


def wait_for(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{condition} never held")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("workers"), SERVICE_WORKERS="2",
                          SERVICE_LOG_LEVEL="info", SERVICE_ADMIN_KEYS="admin")
    try:
        server.wait("/health/ready", 200)  # every worker serves
        yield server
    finally:
        server.stop()


def post(server: Server, text: str) -> httpx.Response:
    # a connection each: the kernel picks the worker per connection
    return httpx.post(server.url + "/translate", json={"text": text}, timeout=60)


def test_both_workers_answer_and_metrics_sum_them(pair: Server) -> None:
    assert len(workers(pair)) == 2
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda t: post(pair, t), TEXTS))
    assert [a.status_code for a in answers] == [200] * len(TEXTS)
    served = {e["worker"] for e in log_entries(pair)
              if e.get("route") == "/translate" and e.get("status") == 200}
    assert served == {0, 1}
    # whichever worker answers the scrape counts every worker's sentences
    for _ in range(6):
        assert metric(pair, "translate_sentences_total") == len(TEXTS)
    assert metric(pair, "translate_ready") == 1
    assert metric(pair, "translate_queue_limit_sentences") == 2 * 1024
    assert metric(pair, "translate_pending_sentences") == 0


def test_each_worker_gets_its_share_of_the_cores(pair: Server) -> None:
    cores = len(os.sched_getaffinity(0))
    for pid in workers(pair):
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"SERVICE_INTRA_OP_THREADS={max(1, cores // 2)}".encode() in environ


def test_the_admin_api_is_off(pair: Server) -> None:
    r = httpx.post(pair.url + "/models/en-de/reload", headers={"X-API-Key": "admin"},
                   timeout=10)
    assert r.status_code == 403
    assert "SERVICE_WORKERS" in r.json()["error"]["message"]


def test_a_worker_that_dies_is_started_again(pair: Server) -> None:
    before = metric(pair, "translate_sentences_total")
    victim = workers(pair)[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "starting it again" in pair.log())
    # ready only when every worker serves: the survivor says so while the other loads
    unready = httpx.get(pair.url + "/health/ready", timeout=5)
    assert unready.status_code == 503 and "SERVICE_WORKERS" in unready.text
    # requests meanwhile, a connection each: the new worker listens only once it serves,
    # so none is turned away
    statuses = []
    while httpx.get(pair.url + "/health/ready", timeout=5).status_code != 200:
        statuses.append(post(pair, TEXTS[len(statuses) % len(TEXTS)]).status_code)
    statuses += [post(pair, text).status_code for text in TEXTS[:10]]
    assert statuses == [200] * len(statuses) and len(statuses) > 10
    assert len(workers(pair)) == 2 and victim not in workers(pair)
    # the dead worker's counts stay counted
    assert metric(pair, "translate_sentences_total") == before + len(statuses)


def test_sigterm_drains_every_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path, SERVICE_WORKERS="2", SERVICE_LOG_LEVEL="info")
    try:
        server.wait("/health/ready", 200)
        children = workers(server)
        heavy = {"text": [" ".join(TEXTS)] * 16, "beam_size": 8}
        with ThreadPoolExecutor(1) as pool:
            answer = pool.submit(httpx.post, server.url + "/translate", json=heavy, timeout=120)
            wait_for(lambda: metric(server, "translate_pending_sentences") > 0, 30)
            server.process.send_signal(signal.SIGTERM)
            assert answer.result().status_code == 200
        assert server.process.wait(timeout=60) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
    finally:
        server.stop()


def test_a_worker_that_cannot_start_stops_the_service(tmp_path: Path) -> None:
    with socket.socket() as taken:  # a listener without SO_REUSEPORT: the workers cannot bind
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "service"], cwd=ROOT, stdout=out, stderr=out,
                env=os.environ | {"SERVICE_WORKERS": "2", "SERVICE_PORT": str(port),
                                  "SERVICE_BUNDLE_DIR": str(DEFAULT_BUNDLE)})
        assert process.wait(timeout=60) != 0
    assert "within 10s of starting: stopping" in log.read_text()


def test_a_worker_that_hangs_is_killed_and_started_again(tmp_path: Path) -> None:
    server = start_server(tmp_path, SERVICE_WORKERS="2", SERVICE_LOG_LEVEL="info",
                          SERVICE_WORKER_TIMEOUT_S="4")
    try:
        server.wait("/health/ready", 200)
        hung = workers(server)[0]
        os.kill(hung, signal.SIGSTOP)  # its event loop stops: no heartbeat, no answers
        wait_for(lambda: "has not answered for 4s" in server.log(), 30)
        wait_for(lambda: "starting it again" in server.log())
        server.wait("/health/ready", 200, timeout=30)
        assert hung not in workers(server) and len(workers(server)) == 2
        answers = [post(server, text) for text in TEXTS[:10]]
        assert [a.status_code for a in answers] == [200] * 10
    finally:
        server.stop()

"""Connection-level limits of a real server process: slow or silent clients, oversized heads,
malformed HTTP, too many connections. Loopback only, bounded in time and connections."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Server, start_server

HEADER_TIMEOUT_S = 1.0
MAX_CONNECTIONS = 4


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("edge"),
                          SERVICE_HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
                          SERVICE_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
                          SERVICE_MAX_HEADER_BYTES="8192")
    server.wait("/health/ready", 200)
    yield server
    server.stop()


def connect(server: Server) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def closed_after(sock: socket.socket, trickle: bytes = b"") -> float:
    """Seconds until the server closes ``sock`` (sending ``trickle`` a byte at a time)."""
    started = time.monotonic()
    sock.settimeout(0.2)
    for byte in trickle:
        sock.sendall(bytes([byte]))
        try:
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:  # reset: closed too
            return time.monotonic() - started
    sock.settimeout(10)
    try:
        while sock.recv(1024):
            pass
    except OSError:
        pass
    return time.monotonic() - started


def response_of(sock: socket.socket, request: bytes) -> tuple[int, dict[str, object]]:
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_silent_connection_is_closed(edge_server: Server) -> None:
    with connect(edge_server) as sock:
        assert HEADER_TIMEOUT_S * 0.5 < closed_after(sock) < HEADER_TIMEOUT_S + 5


def test_trickled_headers_are_cut_off(edge_server: Server) -> None:
    head = b"POST /translate HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    with connect(edge_server) as sock:
        assert closed_after(sock, head) < HEADER_TIMEOUT_S + 5


def test_the_next_request_on_a_kept_alive_connection_has_a_deadline_too(
        edge_server: Server) -> None:
    with connect(edge_server) as sock:
        status, _ = response_of(sock, b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200
        assert closed_after(sock, b"GET /health/live HTTP/1.1\r\n") < HEADER_TIMEOUT_S + 5


@pytest.mark.parametrize("trickle", [False, True])
def test_an_oversized_head_gets_json_431_and_the_connection_closes(edge_server: Server,
                                                                  trickle: bool) -> None:
    head = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    with connect(edge_server) as sock:
        if trickle:  # in pieces, each under the limit
            for at in range(0, 12_000, 4000):
                sock.sendall(head[at : at + 4000])
                time.sleep(0.05)
            head = head[12_000:]
        status, body = response_of(sock, head)
        assert status == 431 and "SERVICE_MAX_HEADER_BYTES" in str(body["error"])
        assert closed_after(sock) < 5
    assert httpx.get(edge_server.url + "/health/live").status_code == 200


def test_malformed_http_gets_json(edge_server: Server) -> None:
    with connect(edge_server) as sock:
        status, body = response_of(sock, b"NONSENSE\r\n\r\n")
        assert status == 400 and body["error"]["code"] == "bad_request"


def test_beyond_the_connection_cap_requests_get_503_but_health_answers(
        edge_server: Server, tmp_path: Path) -> None:
    idle = [connect(edge_server) for _ in range(MAX_CONNECTIONS)]
    try:
        with connect(edge_server) as sock:
            status, body = response_of(
                sock, b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                b"\r\nContent-Length: 15\r\n\r\n{\"text\": \"Op\"}")
            assert status == 503 and "SERVICE_MAX_CONNECTIONS" in body["error"]["message"]
        with connect(edge_server) as sock:
            status, _ = response_of(sock, b"GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
            assert status == 200
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)  # the server notices the closed connections
    assert httpx.post(edge_server.url + "/translate", json={"text": "Open"}).status_code == 200

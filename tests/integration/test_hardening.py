"""Overload, shutdown, hostile input, faults and access control against real server processes."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import onnx
import onnx.numpy_helper
import pytest

from service.bundle import MANIFEST, hash_files
from tests.conftest import DECODER_FILE, DEFAULT_BUNDLE, ENCODER_FILE
from tests.integration.conftest import Server, metric, start_server

TEXT = "Insert the selected rows above the current table and keep their formatting."
# Two to three seconds of decoding here, as many texts as SERVICE_MAX_BATCH_SIZE has places:
# long enough for a small request (or a disconnect) to happen while it runs.
HEAVY_TEXTS = [" ".join([TEXT] * 4) + f" ({n})" for n in range(64)]
HEAVY = {"text": HEAVY_TEXTS, "beam_size": 8}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def fire(server: Server, bodies: list[object], workers: int, **headers: str
         ) -> list[tuple[int | str, float, httpx.Response | None]]:
    """POST every body concurrently; (status or exception name, seconds, response)."""

    def one(body: object) -> tuple[int | str, float, httpx.Response | None]:
        started = time.perf_counter()
        try:
            r = httpx.post(server.url + "/translate", json=body, timeout=120, headers=headers)
            return r.status_code, time.perf_counter() - started, r
        except httpx.HTTPError as exc:
            return type(exc).__name__, time.perf_counter() - started, None

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, bodies))


@pytest.fixture
def small_queue_server(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path, SERVICE_MAX_QUEUE_SENTENCES="8", SERVICE_MAX_BATCH_SIZE="4")
    server.wait("/health/ready", 200)
    yield server
    server.stop()


def test_burst_of_ten_times_capacity(small_queue_server: Server) -> None:
    server = small_queue_server
    expected = httpx.post(server.url + "/translate", json={"text": TEXT}).json()
    rss_before = rss_kib(server.process.pid)
    decoded_before = metric(server, "translate_sentences_total")

    results = fire(server, [{"text": TEXT}] * 120, workers=120)

    statuses = [status for status, _, _ in results]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 8 and statuses.count(503) >= 1
    for status, _, response in results:
        assert response is not None
        if status == 200:  # batch mates do not change a translation
            assert response.json()["translations"] == expected["translations"]
        else:
            assert response.headers["Retry-After"] == "1"
            assert "SERVICE_MAX_QUEUE_SENTENCES" in response.json()["error"]["message"]
    # Refused at the door: the server decoded exactly the accepted requests, nothing else.
    assert metric(server, "translate_sentences_total") - decoded_before == statuses.count(200)
    assert metric(server, "translate_pending_sentences") == 0  # the scaling signal drains
    assert server.process.poll() is None
    assert rss_kib(server.process.pid) - rss_before < 200 * 1024  # generous: no leak per request
    assert httpx.get(server.url + "/health/ready").status_code == 200
    assert httpx.post(server.url + "/translate", json={"text": TEXT}).json()[
        "translations"] == expected["translations"]


def test_requests_queued_too_long_get_503_and_are_dropped(tmp_path: Path) -> None:
    server = start_server(tmp_path, SERVICE_QUEUE_TIMEOUT_S="0.05", SERVICE_MAX_BATCH_SIZE="1")
    try:
        server.wait("/health/ready", 200)
        # One big request keeps the decoder busy far longer than 50 ms on any CPU (64 texts at
        # beam 8); single texts sent after it can only wait, and time out.
        big = {"text": [f"{TEXT} ({n})" for n in range(64)], "beam_size": 8}
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(httpx.post, server.url + "/translate", json=big, timeout=300)
            deadline = time.monotonic() + 60
            while metric(server, "translate_queue_wait_seconds_count") < 1 and (
                    time.monotonic() < deadline):  # the big one is decoding
                time.sleep(0.01)
            results = fire(server, [{"text": TEXT}] * 8, workers=8)
            assert first.result().status_code == 200
        statuses = [status for status, _, _ in results]
        assert 503 in statuses and set(statuses) <= {200, 503}, statuses
        timed_out = [r for s, _, r in results if s == 503 and r is not None]
        assert all("SERVICE_QUEUE_TIMEOUT_S" in r.json()["error"]["message"] for r in timed_out)
        sentences = metric(server, "translate_sentences_total")
        assert sentences == 64 + statuses.count(200)  # dropped requests were not decoded
    finally:
        server.stop()


def test_a_small_request_is_answered_while_a_heavy_one_decodes(server: Server) -> None:
    """Step-level batching: the small request joins the running batch instead of waiting
    for the heavy one to finish (an order of events, not a timing). The heavy one holds
    every place of the batch (the small one starts beyond it) and decodes about ten times
    longer than the small one takes; a lighter one (32 texts of two sentences) took only two
    or three times longer, and a slow moment on CI reversed the order."""
    with ThreadPoolExecutor(1) as pool:
        started = metric(server, "translate_queue_wait_seconds_count")
        first = pool.submit(httpx.post, server.url + "/translate", json=HEAVY, timeout=300)
        deadline = time.monotonic() + 60
        while metric(server, "translate_queue_wait_seconds_count") == started and (
                time.monotonic() < deadline):  # the heavy one is decoding
            time.sleep(0.01)
        small = httpx.post(server.url + "/translate", json={"text": "Open", "beam_size": 4})
        assert small.status_code == 200
        assert not first.done(), "the heavy request finished before the small one was answered"
        assert first.result().status_code == 200


def test_a_client_that_disconnects_has_its_sentences_dropped(server: Server) -> None:
    body = json.dumps(HEAVY).encode()
    decoded = metric(server, "translate_sentences_total")
    started = metric(server, "translate_queue_wait_seconds_count")
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                     b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        deadline = time.monotonic() + 60
        while metric(server, "translate_queue_wait_seconds_count") == started and (
                time.monotonic() < deadline):  # decoding
            time.sleep(0.01)
    deadline = time.monotonic() + 60
    while metric(server, "translate_pending_sentences") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert metric(server, "translate_pending_sentences") == 0
    assert metric(server, "translate_sentences_total") - decoded < len(HEAVY_TEXTS)
    assert httpx.post(server.url + "/translate", json={"text": "Open"}).status_code == 200


def test_a_request_over_the_cost_cap_gets_413_naming_the_setting(tmp_path: Path) -> None:
    server = start_server(tmp_path, SERVICE_MAX_REQUEST_TOKENS="2048")
    try:
        server.wait("/health/ready", 200)
        response = httpx.post(server.url + "/translate",
                              json={"text": [TEXT] * 20, "beam_size": 8}, timeout=30)
        assert response.status_code == 413
        assert "SERVICE_MAX_REQUEST_TOKENS" in response.json()["error"]["message"]
        assert httpx.post(server.url + "/translate", json={"text": [TEXT] * 2, "beam_size": 8},
                          timeout=30).status_code == 200
    finally:
        server.stop()


def test_sigterm_during_load_loses_no_accepted_request(tmp_path: Path) -> None:
    server = start_server(tmp_path, SERVICE_MAX_BATCH_SIZE="2")
    server.wait("/health/ready", 200)

    def one(i: int) -> int | str:
        try:
            return httpx.post(server.url + "/translate", json={"text": TEXT, "beam_size": 8},
                              headers={"X-Request-ID": f"req-{i}"}, timeout=60).status_code
        except httpx.HTTPError as exc:
            return type(exc).__name__

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(one, i) for i in range(16)]
        deadline = time.monotonic() + 30
        # 5 in flight: our /metrics scrape itself and at least 4 translations.
        while metric(server, "translate_http_in_flight") < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        try:  # readiness is off; uvicorn has usually closed the listener already
            ready_after: int | str = httpx.get(server.url + "/health/ready", timeout=5
                                               ).status_code
        except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
            ready_after = "refused"  # or reset: the listener closed as we connected
        results = {f"req-{i}": f.result() for i, f in enumerate(futures)}
    # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is an orderly exit.
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    log = server.log()
    assert "finishing in-flight requests" in log and "Finished server process" in log
    assert ready_after in (503, "refused")
    # Every request the application received got its answer: the requests in flight at
    # SIGTERM completed (200); later ones were refused (503, or never accepted by the socket).
    accepted = {json.loads(line)["request_id"]: json.loads(line)["status"]
                for line in log.splitlines()
                if '"logger":"service.access"' in line and '"req-' in line}
    assert sum(status == 200 for status in accepted.values()) >= 4, accepted
    for request_id, status in accepted.items():
        assert results[request_id] == status, (request_id, results[request_id], status)
    assert set(results.values()) <= {200, 503, "ConnectError", "ReadError", "RemoteProtocolError"}


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b'{"text": "' + b"a" * 2_000_000 + b'"}', 413),
        (b"[" * 50_000 + b"]" * 50_000, 400),
        (b'{"text": ', 400),
        (b'{"text": "\xff\xfe broken utf-8"}', 400),
        (b'{"text": "a", "beam_size": 1e308}', 422),
        (b'{"text": "a", "n_best": -1}', 422),
        (b'{"text": "a", "max_length": 99999999999999999999}', 422),
        (b"", 422),
        (b"null", 422),
    ],
)
def test_hostile_bodies_get_json_4xx(server: Server, content: bytes, status: int) -> None:
    response = httpx.post(server.url + "/translate", content=content, timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == status
    error = response.json()["error"]
    assert error["message"] and "Traceback" not in response.text


@pytest.mark.parametrize(
    "text",
    ["\x00\x07\x1b[31m control \u200b\ufeff", "مرحبا بالعالم", "שלום עולם", "🙂🚀 emoji 🇩🇪",
     "   \t\n  ", "%s %1 $(ARG1) {name}", "<b></b>", "a" * 2000, "\ud7ff\ue000\U0010ffff"],
)
def test_unusual_text_translates(server: Server, text: str) -> None:
    response = httpx.post(server.url + "/translate", json={"text": text, "beam_size": 2},
                          timeout=60)
    assert response.status_code in (200, 413), response.text
    if response.status_code == 200:
        [t] = response.json()["translations"]
        assert isinstance(t["text"], str)
        if not text.strip():
            assert t["text"] == ""


def test_only_placeholders_are_kept(server: Server) -> None:
    response = httpx.post(server.url + "/translate", json={"text": "%s"})
    assert response.json()["translations"][0]["text"].strip() == "%s"


def faulty_decoder_bundle(tmp_path: Path, max_source: int = 40) -> Path:
    """A bundle whose decoder raises inside onnxruntime for sources over ``max_source`` tokens.

    The graph gains ConstantOfShape([max_source - S]), whose sum (0.0) is added to the
    log-probs: outputs are unchanged, but a negative dimension fails at run time. A real
    runtime fault, triggered only by long inputs, so warm-up and short requests pass.
    """
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    model = onnx.load(str(bundle / DECODER_FILE))
    graph = model.graph
    for node in graph.node:  # rename the producer of log_probs
        node.output[:] = ["log_probs_raw" if o == "log_probs" else o for o in node.output]
    h = onnx.helper
    graph.initializer.extend([
        onnx.numpy_helper.from_array(np.array(max_source, np.int64), "fault_limit"),
        onnx.numpy_helper.from_array(np.array(1, np.int64), "fault_axis"),
        onnx.numpy_helper.from_array(np.array([0], np.int64), "fault_unsqueeze"),
    ])
    graph.node.extend([
        h.make_node("Shape", ["src_mask"], ["fault_shape"]),
        h.make_node("Gather", ["fault_shape", "fault_axis"], ["fault_len"]),
        h.make_node("Sub", ["fault_limit", "fault_len"], ["fault_room"]),
        h.make_node("Unsqueeze", ["fault_room", "fault_unsqueeze"], ["fault_dims"]),
        h.make_node("ConstantOfShape", ["fault_dims"], ["fault_zeros"],
                    value=onnx.numpy_helper.from_array(np.zeros(1, np.float32))),
        h.make_node("ReduceSum", ["fault_zeros"], ["fault_zero"], keepdims=0),
        h.make_node("Add", ["log_probs_raw", "fault_zero"], ["log_probs"]),
    ])
    onnx.save(model, str(bundle / DECODER_FILE))
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest["files"] = hash_files(bundle)
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    return bundle


def test_runtime_fault_fails_only_the_running_requests(tmp_path: Path) -> None:
    server = start_server(tmp_path, faulty_decoder_bundle(tmp_path))
    try:
        server.wait("/health/ready", 200)
        long_text = " ".join(["Insert rows"] * 30)
        failed = httpx.post(server.url + "/translate", json={"text": long_text}, timeout=30)
        assert failed.status_code == 500
        error = failed.json()["error"]
        assert error["code"] == "decode_failed" and error["request_id"]
        assert error["request_id"] == failed.headers["X-Request-ID"]
        assert "Traceback" not in failed.text and "onnxruntime" not in failed.text
        for _ in range(3):  # the server keeps serving
            ok = httpx.post(server.url + "/translate", json={"text": "Open the file"})
            assert ok.status_code == 200 and ok.json()["translations"][0]["text"]
        assert "decoding failed with 1 sentences running" in server.log()
    finally:
        server.stop()


@pytest.mark.parametrize("missing", ["spm.model", ENCODER_FILE])
def test_missing_files_keep_the_service_not_ready(tmp_path: Path, missing: str) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    (bundle / missing).unlink()
    server = start_server(tmp_path, bundle)
    try:
        response = server.wait("/health/ready", 503)
        assert f"{missing} is missing" in response.json()["error"]["message"]
        assert server.process.poll() is None  # no silent crash loop: up and saying why
        assert f"{missing} is missing" in server.log()
    finally:
        server.stop()


def test_truncated_model_file_keeps_the_service_not_ready(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    data = (bundle / ENCODER_FILE).read_bytes()
    (bundle / ENCODER_FILE).write_bytes(data[: len(data) // 2])
    server = start_server(tmp_path, bundle)
    try:
        assert "altered" in server.wait("/health/ready", 503).json()["error"]["message"]
    finally:
        server.stop()


def test_api_keys_cors_and_open_health(tmp_path: Path) -> None:
    server = start_server(tmp_path, SERVICE_API_KEYS="k-one,k-two",
                          SERVICE_CORS_ORIGINS="https://app.example")
    try:
        server.wait("/health/ready", 200)
        url = server.url + "/translate"
        body = {"text": "Open"}
        missing = httpx.post(url, json=body)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        # the key is checked before the body is read: no key, no hint about the body
        garbage = httpx.post(url, content=b"{not json",
                             headers={"content-type": "application/json"})
        assert garbage.status_code == 401 and garbage.json()["error"]["code"] == "unauthorized"
        assert httpx.post(url, json=body, headers={"X-API-Key": "nope"}).status_code == 403
        assert httpx.post(url, json=body, headers={"X-API-Key": "k-two"}).status_code == 200
        assert httpx.post(url, json=body, headers={"Authorization": "Bearer k-one"}
                          ).status_code == 200
        assert httpx.get(server.url + "/health/ready").status_code == 200
        assert httpx.get(server.url + "/metrics").status_code == 200
        preflight = httpx.options(url, headers={"Origin": "https://app.example",
                                                "Access-Control-Request-Method": "POST"})
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.options(url, headers={"Origin": "https://evil.example",
                                            "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in other.headers
    finally:
        server.stop()


def test_cors_is_off_by_default(server: Server) -> None:
    response = httpx.post(server.url + "/translate", json={"text": "Open"},
                          headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in response.headers


def test_chunked_body_over_the_limit_gets_413(server: Server) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        yield b'{"text": "'
        for _ in range(40):
            yield b"a" * 50_000
        yield b'"}'

    response = httpx.post(server.url + "/translate", content=chunks(), timeout=30,
                          headers={"content-type": "application/json"})
    assert response.status_code == 413
    assert "SERVICE_MAX_BODY_BYTES" in response.json()["error"]["message"]


def test_stalled_body_gets_408_and_does_not_hold_shutdown(tmp_path: Path) -> None:
    server = start_server(tmp_path, SERVICE_BODY_TIMEOUT_S="1", SERVICE_SHUTDOWN_TIMEOUT_S="30")
    try:
        server.wait("/health/ready", 200)
        host, port = server.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=20) as sock:
            sock.sendall(b"POST /translate HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 1000\r\n\r\n" + b"{" * 100)
            received = b""
            while chunk := sock.recv(65536):  # the 408 comes with "connection: close"
                received += chunk
            answer = received.decode(errors="replace")
            assert answer.startswith("HTTP/1.1 408"), answer[:200]
            assert "SERVICE_BODY_TIMEOUT_S" in answer
            stopped = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=20)
        assert time.monotonic() - stopped < 10  # not the 30 s drain: nothing was in flight
    finally:
        server.stop()


def test_requests_cut_by_the_shutdown_timeout_get_json_503(tmp_path: Path) -> None:
    server = start_server(tmp_path, SERVICE_SHUTDOWN_TIMEOUT_S="1", SERVICE_MAX_BATCH_SIZE="1")
    server.wait("/health/ready", 200)
    big = {"text": [f"{TEXT} ({n})" for n in range(64)], "beam_size": 8}
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(httpx.post, server.url + "/translate", json=big, timeout=120)
                   for _ in range(8)]
        deadline = time.monotonic() + 60
        while metric(server, "translate_pending_sentences") + metric(
                server, "translate_sentences_total") < 8 * 64 and (
                time.monotonic() < deadline):  # all eight accepted (queued, decoding or done)
            time.sleep(0.01)
        server.process.send_signal(signal.SIGTERM)
        responses = [f.result() for f in futures]
    server.process.wait(timeout=60)
    cut = [r for r in responses if r.status_code != 200]
    assert cut, "eight 64-text beam-8 requests finished within the 1 s shutdown timeout"
    for r in cut:
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert r.json()["error"]["code"] == "shutting_down"


def test_shutdown_delay_keeps_serving_while_readiness_is_off(tmp_path: Path) -> None:
    server = start_server(tmp_path, SERVICE_SHUTDOWN_DELAY_S="3")
    server.wait("/health/ready", 200)
    signalled = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert httpx.get(server.url + "/health/ready").status_code == 503
    # a new connection, opened after the signal, is still accepted and answered
    with httpx.Client() as fresh:
        assert fresh.post(server.url + "/translate", json={"text": TEXT}).status_code == 200
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert time.monotonic() - signalled >= 3

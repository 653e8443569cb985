"""README claims checked against real server processes, as a user sees them: the execution
provider, settings (metrics protection, keep-alive, log level, length penalty, length ratio),
the request's ``max_length``, and ``attn-translate-po``'s options and key handling.

Three servers, each started once: ``tuned`` (many settings changed at once), ``keyed`` (API
keys, debug logs, the bundle's decoding defaults) and ``no_cuda`` (``SERVICE_PROVIDER=cuda``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import onnxruntime as ort
import polib
import pytest
import sentencepiece as spm

from tests.conftest import DEFAULT_BUNDLE, ROOT
from tests.integration.conftest import Server, start_server

KEY = "readme-claims-key"
CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
LONG = ("The document could not be printed because the printer is not connected to this "
        "computer and the driver is missing.")
SHORT = "Could not save the file."
TOOL = Path(sys.executable).parent / "attn-translate-po"  # the installed entry point

TUNED = {"SERVICE_PROVIDER": "auto", "SERVICE_LOG_LEVEL": "warning",
         "SERVICE_LENGTH_PENALTY": "0", "SERVICE_MAX_LENGTH_RATIO": "0.01",
         "SERVICE_KEEPALIVE_TIMEOUT_S": "1", "SERVICE_API_KEYS": KEY,
         "SERVICE_PROTECT_METRICS": "true"}


def started(tmp: Path, **env: str) -> Iterator[Server]:
    srv = start_server(tmp, DEFAULT_BUNDLE, None, **env)
    try:
        srv.wait("/health/ready", 200)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from started(tmp_path_factory.mktemp("tuned"), **TUNED)


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from started(tmp_path_factory.mktemp("keyed"), SERVICE_API_KEYS=KEY,
                       SERVICE_LOG_LEVEL="debug")


def translate(server: Server, text: str | list[str], **options: Any) -> list[dict[str, Any]]:
    response = httpx.post(server.url + "/translate", json={"text": text, **options},
                          headers={"X-API-Key": KEY}, timeout=60)
    assert response.status_code == 200, response.text
    translations: list[dict[str, Any]] = response.json()["translations"]
    return translations


def log_lines(server: Server) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.log().splitlines() if line.strip()]


# --- the execution provider --------------------------------------------------------------

def test_provider_cuda_without_cuda_stays_up_and_not_ready_saying_why(
        tmp_path: Path) -> None:
    server = start_server(tmp_path, SERVICE_PROVIDER="cuda")
    try:
        if CUDA:  # nothing to fail on: the claim is about machines without CUDA
            server.wait("/health/ready", 200)
            assert httpx.get(server.url + "/model").json()["provider"] == "cuda"
            return
        deadline = time.monotonic() + 30
        while "not loaded" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)  # the load runs in the background; wait for its verdict
        ready = httpx.get(server.url + "/health/ready", timeout=5)
        assert ready.status_code == 503
        assert ready.headers["Retry-After"].isdigit()
        error = ready.json()["error"]
        assert error["code"] == "not_ready"
        assert "provider 'cuda'" in error["message"] and "CPUExecutionProvider" in error[
            "message"], error
        time.sleep(0.5)  # no crash loop: the process is still there, serving
        assert server.process.poll() is None
        assert httpx.get(server.url + "/health/live", timeout=5).status_code == 200
        assert httpx.get(server.url + "/health/ready", timeout=5).status_code == 503
        refused = httpx.post(server.url + "/translate", json={"text": "Open"}, timeout=5)
        assert refused.status_code == 503 and "Retry-After" in refused.headers
        errors = [line for line in log_lines(server) if line["level"] == "error"]
        assert len(errors) == 1 and "provider 'cuda'" in errors[0]["message"]  # one clear line
    finally:
        server.stop()


def test_provider_auto_falls_back_to_cpu_with_a_warning(tuned: Server) -> None:
    model = httpx.get(tuned.url + "/model", headers={"X-API-Key": KEY}).json()
    warnings = [line["message"] for line in log_lines(tuned) if line["level"] == "warning"]
    if CUDA:
        assert model["provider"] == "cuda" and not warnings
        return
    assert model["provider"] == "cpu"
    assert any("CUDA is not available" in w and "CPU" in w for w in warnings), warnings
    info = httpx.get(tuned.url + "/metrics", headers={"X-API-Key": KEY}).text
    assert 'provider="cpu"' in info and "translate_ready 1.0" in info


# --- access: SERVICE_PROTECT_METRICS -----------------------------------------------------

def test_protect_metrics_requires_a_key_for_metrics(tuned: Server) -> None:
    url = tuned.url + "/metrics"
    missing = httpx.get(url)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "unauthorized"
    assert httpx.get(url, headers={"X-API-Key": "wrong"}).status_code == 403
    for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}):
        answer = httpx.get(url, headers=headers)
        assert answer.status_code == 200 and "translate_ready 1.0" in answer.text
    for path in ("/health/live", "/health/ready"):  # health stays open
        assert httpx.get(tuned.url + path).status_code == 200


def test_metrics_stay_open_with_keys_unless_protected(keyed: Server) -> None:
    assert httpx.get(keyed.url + "/model").status_code == 401  # the keys are in force...
    metrics = httpx.get(keyed.url + "/metrics")
    assert metrics.status_code == 200 and "translate_ready 1.0" in metrics.text  # ...not here


# --- SERVICE_KEEPALIVE_TIMEOUT_S ---------------------------------------------------------

def idle_until_closed(server: Server, patience: float) -> float | None:
    """Seconds an idle keep-alive connection lived after its response (None: still open
    after ``patience``)."""
    parts = urlsplit(server.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: test\r\n\r\n")
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(4096)
        head, body = received.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200") and b"connection: close" not in head.lower()
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        while len(body) < length:
            body += sock.recv(4096)
        idle = time.monotonic()
        sock.settimeout(patience)
        try:
            assert sock.recv(1) == b""  # nothing but the server closing
        except TimeoutError:
            return None
        return time.monotonic() - idle


def test_idle_keepalive_connection_closed_after_the_setting(tuned: Server,
                                                             keyed: Server) -> None:
    closed_after = idle_until_closed(tuned, patience=4)  # SERVICE_KEEPALIVE_TIMEOUT_S=1
    assert closed_after is not None and 0.5 <= closed_after <= 3, closed_after
    assert idle_until_closed(keyed, patience=2.5) is None  # the default, 5 s: still open


# --- SERVICE_LOG_LEVEL -------------------------------------------------------------------

def test_log_level_decides_what_is_logged(tuned: Server, keyed: Server) -> None:
    for server in (tuned, keyed):
        response = httpx.get(server.url + "/health/live",
                             headers={"X-Request-ID": "log-level-probe"})
        assert response.headers["X-Request-ID"] == "log-level-probe"
    time.sleep(0.2)  # the access line is written after the response
    debug = log_lines(keyed)  # every line parses as JSON: JSON-lines logs
    probe = [line for line in debug if line.get("request_id") == "log-level-probe"]
    assert probe and probe[0]["level"] == "info" and probe[0]["route"] == "/health/live"
    assert any("ready in" in line["message"] for line in debug)
    warning = log_lines(tuned)
    assert warning and {line["level"] for line in warning} <= {"warning", "error", "critical"}
    assert not [line for line in warning if line.get("request_id") == "log-level-probe"]


# --- SERVICE_LENGTH_PENALTY and SERVICE_MAX_LENGTH_RATIO ---------------------------------

def test_length_penalty_override_changes_the_beam_scores(tuned: Server,
                                                         keyed: Server) -> None:
    """GNMT: beam score = log-probability / ((5 + n) / 6) ** alpha, n counting EOS. The
    bundle's alpha (its manifest, ``keyed``) is not 0; ``tuned`` sets 0: its scores are
    log-probabilities."""
    manifest = json.loads((DEFAULT_BUNDLE / "manifest.json").read_text())
    alpha = manifest["decoding"]["length_penalty"]
    assert alpha > 0
    raw, penalized = (translate(server, SHORT, beam_size=4, return_attention=True)[0]
                      for server in (tuned, keyed))
    tokens = raw["target_tokens"]
    assert penalized["target_tokens"] == tokens, "pick a text both rank the same"
    assert tokens[-1] == "</s>"
    n = len(tokens)
    assert penalized["score"] == pytest.approx(raw["score"] / ((5 + n) / 6) ** alpha, abs=2e-4)
    greedy = translate(tuned, SHORT, beam_size=1, return_attention=True)[0]
    if greedy["target_tokens"] == tokens:  # greedy scores are log-probabilities too
        assert greedy["score"] == pytest.approx(raw["score"], abs=2e-4)


def test_max_length_ratio_override_limits_the_output(tuned: Server, keyed: Server) -> None:
    """Generated tokens <= int(ratio x source tokens) + extra; ours: 2.0 and 10."""
    for beam in (1, 4):
        cut = translate(tuned, LONG, beam_size=beam, return_attention=True)[0]
        source = len(cut["source_tokens"])
        assert source > 20
        assert len(cut["target_tokens"]) == int(0.01 * source) + 10  # ratio 0.01: extra only
        assert cut["target_tokens"][-1] != "</s>"  # cut off, not ended
        full = translate(keyed, LONG, beam_size=beam, return_attention=True)[0]
        assert full["target_tokens"][-1] == "</s>"
        assert 10 < len(full["target_tokens"]) <= 2 * source + 10
        if beam == 1:  # greedy, cut short: the same tokens, fewer of them
            assert cut["target_tokens"] == full["target_tokens"][:10]


# --- the request's max_length ------------------------------------------------------------

def test_max_length_caps_the_generated_subword_tokens(keyed: Server) -> None:
    sp = spm.SentencePieceProcessor(model_file=str(DEFAULT_BUNDLE / "spm.model"))
    for beam in (1, 4):
        free = translate(keyed, LONG, beam_size=beam)[0]["text"]
        assert len(sp.encode(free)) > 8
        for cap in (1, 4, 8):
            [capped] = translate(keyed, LONG, beam_size=beam, max_length=cap,
                                 return_attention=True)
            assert len(capped["target_tokens"]) == cap and "</s>" not in capped["target_tokens"]
            assert capped["text"] == sp.decode_pieces(capped["target_tokens"]).strip()
            assert len(sp.encode(capped["text"])) <= cap
            plain = translate(keyed, LONG, beam_size=beam, max_length=cap)[0]["text"]
            assert plain == capped["text"]
        roomy = translate(keyed, LONG, beam_size=beam, max_length=512)[0]["text"]
        assert roomy == free  # a cap above the model's own limit changes nothing


# --- attn-translate-po: --api-key, --beam-size, --accelerator ----------------------------

def run_tool(*args: str | Path, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(TOOL), *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env=env)


def write_catalog(path: Path, msgids: list[str]) -> Path:
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8",
                   "Plural-Forms": "nplurals=2; plural=(n != 1);", "Language": "de"}
    po.extend(polib.POEntry(msgid=m, msgstr="") for m in msgids)
    po.save(str(path))
    return path


def filled(path: Path) -> dict[str, str]:
    return {e.msgid: e.msgstr for e in polib.pofile(str(path))}


PLAIN = ["Game Over!", "Start a new game", "Alternate", "Easy", "Keyboard shortcuts",
         "Welcome to Swell Foop", "The size of the game board."]


def test_po_tool_exits_1_when_the_server_refuses_the_key(keyed: Server, tmp_path: Path
                                                          ) -> None:
    catalog = write_catalog(tmp_path / "de.po", PLAIN[:2])
    out = tmp_path / "out.po"
    env = {k: v for k, v in os.environ.items() if k != "ATTN_TRANSLATE_API_KEY"}
    for key, status in (([], "401"), (["--api-key", "not-the-key"], "403")):
        refused = run_tool(catalog, "--url", keyed.url, "--out", out, *key, env=env)
        assert refused.returncode == 1, refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert line.startswith("attn-translate-po: error: ") and status in line, line
        assert keyed.url in line and not out.exists()
    done = run_tool(catalog, "--url", keyed.url, "--out", out, "--api-key", KEY, env=env)
    assert done.returncode == 0 and "filled 2 of 2 entries" in done.stdout, done.stderr
    out.unlink()
    by_env = run_tool(catalog, "--url", keyed.url, "--out", out,
                      env={**env, "ATTN_TRANSLATE_API_KEY": KEY})  # --api-key's default
    assert by_env.returncode == 0 and out.exists(), by_env.stderr


def test_po_tool_beam_size(keyed: Server, tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "de.po", PLAIN)
    greedy = [t["text"] for t in translate(keyed, PLAIN, beam_size=1)]
    default = [t["text"] for t in translate(keyed, PLAIN)]  # SERVICE_DEFAULT_BEAM_SIZE
    assert greedy != default, "pick texts whose greedy and beam translations differ"
    for args, expected in ((["--beam-size", "1"], greedy), ([], default)):
        out = tmp_path / f"out{len(args)}.po"
        done = run_tool(catalog, "--url", keyed.url, "--api-key", KEY, "--out", out, *args)
        assert done.returncode == 0, done.stderr
        assert [filled(out)[m] for m in PLAIN] == expected


ACCELERATED = ["_Open the file", "Save _as", "_Quit the game", "&Print the page",
               "Close the &window"]


def check_accelerator(msgid: str, msgstr: str, marker: str, translation: str) -> None:
    """``msgstr`` is ``translation`` with ``marker`` put back on the source's letter if the
    translation has it, else on its first letter."""
    letter = msgid[msgid.index(marker) + 1]
    assert msgstr.count(marker) == 1 and msgstr.replace(marker, "") == translation, msgstr
    placed = msgstr[msgstr.index(marker) + 1]
    if letter.casefold() in translation.casefold():
        assert placed.casefold() == letter.casefold(), (msgid, msgstr)
    else:
        assert placed == next(c for c in translation if c.isalnum()), (msgid, msgstr)


def test_po_tool_accelerator(keyed: Server, tmp_path: Path) -> None:
    catalog = write_catalog(tmp_path / "de.po", ACCELERATED)
    auto = run_tool(catalog, "--url", keyed.url, "--dry-run")
    assert "accelerator _" in auto.stdout, auto.stdout  # the most common one
    chosen = run_tool(catalog, "--url", keyed.url, "--dry-run", "--accelerator", "&")
    assert "accelerator &" in chosen.stdout, chosen.stdout
    for args, marker in (([], "_"), (["--accelerator", "&"], "&")):
        out = tmp_path / f"out{len(args)}.po"
        done = run_tool(catalog, "--url", keyed.url, "--api-key", KEY, "--out", out, *args)
        assert done.returncode == 0, done.stderr
        msgids = [m for m in ACCELERATED if marker in m]
        expected = translate(keyed, [m.replace(marker, "") for m in msgids])
        for msgid, translation in zip(msgids, expected, strict=True):
            check_accelerator(msgid, filled(out)[msgid], marker, translation["text"])

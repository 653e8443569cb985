"""Every endpoint of a real server process serving the shipped default bundle."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.bundle import read_manifest
from service.client import Client, TranslateError
from service.placeholders import keeps_placeholders
from tests.conftest import DECODER_FILE, DEFAULT_BUNDLE, ROOT
from tests.integration.conftest import Server, metric, start_server

MANIFEST = read_manifest(DEFAULT_BUNDLE)


def post(server: Server, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(server.url + "/translate", json=body, timeout=60, **kwargs)  # type: ignore[arg-type]


def test_health_and_model_metadata(server: Server) -> None:
    assert httpx.get(server.url + "/health/live").json() == {"status": "ok"}
    assert httpx.get(server.url + "/health/ready").json()["status"] == "ready"
    info = httpx.get(server.url + "/model").json()
    assert info["model_id"] == MANIFEST.model_id
    assert info["provider"] == "cpu" and info["variant"] in MANIFEST.variants
    assert "fp32_beam4" in info["metrics"] and "Model card" in info["model_card"]
    assert info["shortlist"] is True  # the bundle's default
    assert set(info["shortlist_quality"]) >= {"test", "heldout"}
    assert info["fused_encoder"] is True  # the shipped encoder fuses to the same numbers


def test_the_shortlist_setting_over_http(server: Server, tmp_path: Path) -> None:
    """SERVICE_SHORTLIST=false serves the whole vocabulary: /model says so, and a request
    gets what the library finds without the shortlist (scores over all 10,000 pieces are
    lower than over a shortlist's)."""
    from service.translator import DecodeOptions, Translator

    texts = ["Could not save the file %s.", "Remove the four of spades.", "Export as PDF"]
    whole = start_server(tmp_path, SERVICE_SHORTLIST="false")
    try:
        whole.wait("/health/ready", 200)
        assert httpx.get(whole.url + "/model").json()["shortlist"] is False
        got = {name: post(srv, {"text": texts, "beam_size": 4}).json()["translations"]
               for name, srv in (("whole", whole), ("shortlist", server))}
    finally:
        whole.stop()
    for name, shortlist in (("whole", False), ("shortlist", True)):
        here = Translator(DEFAULT_BUNDLE, shortlist=shortlist).translate(
            texts, DecodeOptions(beam_size=4))
        assert [t["text"] for t in got[name]] == [t.best.text for t in here]
        assert [t["score"] for t in got[name]] == pytest.approx(
            [t.best.score for t in here], abs=1e-3)
    assert all(w["score"] < s["score"] for w, s in zip(got["whole"], got["shortlist"],
                                                      strict=True))


def test_single_text_and_batch(server: Server) -> None:
    single = post(server, {"text": "Open the file."})
    assert single.status_code == 200
    body = single.json()
    assert (body["model"], body["model_version"]) == ("en-de", "1")  # SERVICE_BUNDLE_DIR's
    [translation] = body["translations"]
    assert translation["text"] and translation["score"] < 0
    assert set(body["timing"]) == {"total_ms", "queue_ms", "decode_ms", "encode_ms",
                                   "batch_size"}

    batch = post(server, {"text": ["Insert table", "", "Delete the selected rows"],
                          "beam_size": 1}).json()["translations"]
    assert len(batch) == 3 and batch[1]["text"] == "" and batch[0]["text"] and batch[2]["text"]


def test_matches_the_offline_evaluation_cli(server: Server, tmp_path: Path) -> None:
    """Same machine, same run: the server and the offline CLI give identical outputs, although
    the CLI batches the sentences differently (length-sorted) than one request does."""
    lines = (ROOT / "tests" / "data" / "ui-strings.tsv").read_text(encoding="utf-8")
    (tmp_path / "test.tsv").write_text("".join(lines.splitlines(keepends=True)[:24]),
                                       encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "model_export", "evaluate", "--bundle", str(DEFAULT_BUNDLE),
         "--data", str(tmp_path), "--beam", "4", "--json", str(tmp_path / "eval.json")],
        cwd=ROOT, capture_output=True, text=True, check=True)
    offline = json.loads((tmp_path / "eval.json").read_text(encoding="utf-8"))
    sources = [o["source"] for o in offline["outputs"]]
    assert len(sources) == 24 and offline["scores"]["sentences"] == 24

    online = post(server, {"text": sources, "beam_size": 4}).json()["translations"]
    assert [t["text"] for t in online] == [o["output"] for o in offline["outputs"]]


def test_placeholders_come_back_intact(server: Server) -> None:
    texts = ["Could not open %s.", "Delete $(ARG1) rows?", "The file {name} is read-only.",
             "Page %1 of %2"]
    out = post(server, {"text": texts}).json()["translations"]
    for source, t in zip(texts, out, strict=True):
        assert keeps_placeholders(source, t["text"]), (source, t["text"])


def test_attention_alignment_and_n_best(server: Server) -> None:
    response = post(server, {"text": "Save the document", "beam_size": 4, "n_best": 3,
                             "return_attention": True, "return_alignment": True})
    [t] = response.json()["translations"]
    attention = np.array(t["attention"])
    assert attention.shape == (len(t["target_tokens"]), len(t["source_tokens"]))
    np.testing.assert_allclose(attention.sum(axis=1), 1.0, atol=2e-3)
    assert t["source_tokens"][-1] == "</s>" and t["target_tokens"][-1] == "</s>"
    assert len(t["alternatives"]) == 3 and t["alternatives"][0]["text"] == t["text"]
    scores = [a["score"] for a in t["alternatives"]]
    assert scores == sorted(scores, reverse=True)
    words = t["text"].split()
    assert [link["target"] for link in t["alignment"]] == list(range(len(words)))
    assert {link["source_word"] for link in t["alignment"]} <= {"Save", "the", "document"}


def test_concurrent_requests_share_decoder_steps(server: Server) -> None:
    before = {name: metric(server, name) for name in (
        "translate_sentences_total", "translate_batch_size_count", "translate_batch_size_sum")}
    texts = [f"Insert {n} rows above the selection" for n in range(24)]
    with ThreadPoolExecutor(24) as pool:
        responses = list(pool.map(lambda t: post(server, {"text": t, "beam_size": 2}), texts))
    assert all(r.status_code == 200 for r in responses)
    sentences, steps, running = (metric(server, name) - value for name, value in before.items())
    assert sentences == 24
    assert running / steps > 1.5  # sentences per decoder step, on average
    assert max(r.json()["timing"]["batch_size"] for r in responses) > 1


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"text": "a" * 2001}, 413, "SERVICE_MAX_TEXT_CHARS"),
        ({"text": ["a"] * 65}, 413, "SERVICE_MAX_TEXTS"),
        ({"text": "word " * 300}, 413, "SERVICE_MAX_INPUT_TOKENS"),
        ({"text": "a", "beam_size": 9}, 422, "SERVICE_MAX_BEAM_SIZE"),
        ({"text": "a", "beam_size": 2, "n_best": 3}, 422, "must not exceed beam_size"),
        ({"text": 42}, 422, "valid string"),
        ({"text": ["a", 3]}, 422, "valid string"),
        ({"text": []}, 422, "empty"),
        ({"text": "a", "return_alignment": 0}, 422, "valid boolean"),
        ({"text": "a", "beam_size": "4"}, 422, "valid integer"),
        ({"beam_size": 2}, 422, "text: Field required"),
        ({"text": "a", "max_length": 10_000}, 422, "max_length"),
        ({"text": "a", "unknown": 1}, 422, "Extra inputs"),
        ([1, 2], 422, "valid dictionary"),
    ],
)
def test_bad_input_gets_a_clear_4xx(server: Server, body: object, status: int,
                                    message: str) -> None:
    response = post(server, body)
    assert response.status_code == status
    error = response.json()["error"]
    assert message in error["message"] and error["request_id"]


def test_invalid_json_and_request_id(server: Server) -> None:
    response = httpx.post(server.url + "/translate", content=b'{"text": ',
                          headers={"content-type": "application/json",
                                   "X-Request-ID": "client-42"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"
    assert response.headers["X-Request-ID"] == "client-42"
    assert re.fullmatch(r"[0-9a-f]{32}", httpx.get(server.url + "/health/live")
                        .headers["X-Request-ID"])
    assert '"request_id":"client-42"' in server.log()


def test_metrics_exposition(server: Server) -> None:
    text = httpx.get(server.url + "/metrics").text
    for name in ("translate_http_requests_total", "translate_http_request_seconds_bucket",
                 "translate_queue_wait_seconds_bucket", "translate_batch_size_bucket",
                 "translate_tokens_in_total", "translate_tokens_out_total",
                 "translate_decode_steps_total", "translate_http_in_flight",
                 "translate_model_load_seconds", "translate_model_info",
                 "translate_glossary_redecoded_total"):
        assert name in text, name
    assert 'provider="cpu"' in text
    # what decoding does is labelled by model and version
    assert 'translate_model_ready{model="en-de",version="1"} 1.0' in text
    assert re.search(r'^translate_sentences_total\{model="en-de",version="1"\} \d', text, re.M)
    assert 'route="/translate",status="200"' in text


def test_corrupted_bundle_keeps_the_service_not_ready(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    with (bundle / DECODER_FILE).open("r+b") as f:
        f.seek(2048)
        f.write(b"\x00" * 16)
    server = start_server(tmp_path, bundle)
    try:
        response = server.wait("/health/ready", 503)
        assert "altered" in response.json()["error"]["message"]
        assert post(server, {"text": "Open"}).status_code == 503
        assert httpx.get(server.url + "/health/live").status_code == 200
        assert f"{DECODER_FILE} was altered" in server.log()
    finally:
        server.stop()


def test_python_client_against_the_server(server: Server) -> None:
    with Client(server.url) as client:
        assert client.ready() and client.model()["model_id"] == MANIFEST.model_id
        result = client.translate(["Open the file", "Save as %s"], beam_size=2, n_best=2,
                                  return_attention=True, request_id="client-1")
        assert result.request_id == "client-1" and len(result.translations) == 2
        direct = post(server, {"text": ["Open the file", "Save as %s"], "beam_size": 2,
                               "n_best": 2}).json()["translations"]
        assert [t.text for t in result.translations] == [t["text"] for t in direct]
        first = result.translations[0]
        assert first.attention is not None and first.target_tokens is not None
        assert len(first.attention) == len(first.target_tokens)
        assert [a.text for a in first.alternatives] == [a["text"] for a in
                                                        direct[0]["alternatives"]]
        with pytest.raises(TranslateError) as error:
            client.translate("a" * 3000)
        assert error.value.status == 413 and error.value.code == "limit_exceeded"


def test_a_glossary_over_http(server: Server) -> None:
    body = {"text": ["Move the file to the trash", "Empty the trash", "Open"],
            "glossary": {"trash": "Papierkorb", "file": "Datei"}}
    response = post(server, body)
    assert response.status_code == 200, response.text
    first, second, third = response.json()["translations"]
    assert sorted(t["target"] for t in first["terms"]) == ["Datei", "Papierkorb"]
    for t in first["terms"] + second["terms"]:
        assert first["text"][t["target_start"]:t["target_end"]] == t["target"] or (
            second["text"][t["target_start"]:t["target_end"]] == t["target"])
    assert body["text"][0][first["terms"][0]["source_start"]:first["terms"][0]["source_end"]] in (
        "file", "trash")
    assert third["terms"] == []
    assert "terms" not in post(server, {"text": "Open"}).json()["translations"][0]
    refused = post(server, {"text": "Open", "glossary": {"Save %s": "Speichern %s"}})
    assert refused.status_code == 422
    assert "glossary entry 'Save %s': the source term contains a placeholder" in refused.text

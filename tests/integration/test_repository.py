"""Many models, one service: a repository served over HTTP, routed by model id or language
pair, with the admin API loading, unloading and reloading versions while requests run."""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import polib
import pytest

from service.translator import DecodeOptions, Translator
from tests.conftest import ROOT
from tests.integration.conftest import Server, start_server

ADMIN = {"Authorization": "Bearer admin-secret"}
TEXTS = ["Open the file", "Save the document before closing?"]


def translate(server: Server, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(server.url + "/translate", json=body, headers=headers, timeout=120)


def admin(server: Server, model: str, action: str,
          headers: dict[str, str] = ADMIN) -> httpx.Response:
    return httpx.post(f"{server.url}/models/{model}/{action}", headers=headers, timeout=120)


@functools.cache
def _translator(model: str) -> Translator:
    return Translator(ROOT / "models" / model)


def served_here(model: str, texts: list[str]) -> list[str]:
    """What the shipped model gives in this process (beam 4, as the server's default): the
    server must give the same, on this CPU."""
    return [t.best.text for t in _translator(model).translate(texts, DecodeOptions(beam_size=4))]


def model_pending(server: Server, model: str) -> float:
    """The model's own gauge of accepted, unanswered sentences (summed over versions)."""
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(
        rf'^translate_model_pending_sentences{{model="{model}",[^}}]*}} (\S+)$', text, re.M))


def copy_bundle(name: str, to: Path) -> Path:
    shutil.copytree(ROOT / "models" / name, to)
    return to


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    copy_bundle("en-de", root / "en-de")  # flat: version 1
    copy_bundle("en-fr", root / "en-fr" / "1")  # versioned
    return root


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("server"), bundle=None,
                       SERVICE_MODEL_REPOSITORY=str(repo), SERVICE_ADMIN_KEYS="admin-secret",
                       SERVICE_API_KEYS="api-secret")
    try:
        srv.wait("/health/ready", 200)
        yield srv
    finally:
        srv.stop()


API = {"Authorization": "Bearer api-secret"}


def test_every_model_is_served_and_routed_by_id_or_pair(server: Server) -> None:
    ready = httpx.get(server.url + "/health/ready").json()
    assert ready["models"] == {"en-de": "ready", "en-fr": "ready"}
    listed = httpx.get(server.url + "/models", headers=API).json()["models"]
    assert [(m["id"], m["version"], m["source"], m["target"], m["state"], m["default"])
            for m in listed] == [("en-de", "1", "en", "de", "ready", True),
                                 ("en-fr", "1", "en", "fr", "ready", False)]
    assert all(m["memory_mb"] > 1 and m["loaded_at"] > 0 for m in listed)
    default = translate(server, {"text": TEXTS}, **API).json()
    by_id = translate(server, {"text": TEXTS, "model": "en-fr"}, **API).json()
    by_pair = translate(server, {"text": TEXTS, "source": "en", "target": "fr"}, **API).json()
    assert (default["model"], by_id["model"], by_id["model_version"]) == ("en-de", "en-fr", "1")
    assert by_pair["translations"] == by_id["translations"]
    assert [t["text"] for t in by_id["translations"]] == served_here("en-fr", TEXTS)
    assert [t["text"] for t in default["translations"]] == served_here("en-de", TEXTS)
    info = httpx.get(server.url + "/models/en-fr", headers=API).json()
    assert (info["id"], info["model_id"], info["target_lang"]) == ("en-fr", "en-fr-gru-bahdanau",
                                                                  "fr")
    assert httpx.get(server.url + "/models/en-fr").status_code == 401  # API keys apply


@pytest.mark.parametrize(("body", "message"), [
    ({"model": "en-xx"}, "model 'en-xx' is not served; served: en-de, en-fr"),
    ({"target": "it"}, "* -> it is not served; served pairs: en -> de, en -> fr"),
    ({"source": "de", "target": "en"}, "de -> en is not served"),
    ({"model": "../en-de"}, "String should match pattern"),
])
def test_unknown_models_and_pairs_are_422_naming_what_is_served(
        server: Server, body: dict[str, str], message: str) -> None:
    response = translate(server, {"text": "Open", **body}, **API)
    assert response.status_code == 422 and message in response.text


def test_libretranslate_lists_and_routes_every_pair(server: Server) -> None:
    lt = server.url + "/libretranslate"
    languages = httpx.get(lt + "/languages").json()
    assert languages[0] == {"code": "en", "name": "English", "targets": ["de", "fr"]}
    fr = httpx.post(lt + "/translate", json={"q": TEXTS[0], "source": "auto", "target": "fr",
                                             "api_key": "api-secret"}).json()
    assert fr == {"translatedText": served_here("en-fr", TEXTS[:1])[0],
                  "detectedLanguage": {"confidence": 100.0, "language": "en"}}
    refused = httpx.post(lt + "/translate", json={"q": "x", "source": "en", "target": "es",
                                                  "api_key": "api-secret"})
    assert refused.status_code == 400 and "English (en) to French (fr)" in refused.text


def test_the_admin_api_has_its_own_keys(server: Server, repo: Path, tmp_path: Path) -> None:
    assert admin(server, "en-fr", "reload", {}).status_code == 401
    assert admin(server, "en-fr", "reload", API).status_code == 403  # an API key is not admin
    assert admin(server, "../etc", "load").status_code in (404, 422)
    assert admin(server, "nope", "load").json()["error"]["message"] == (
        f"no model 'nope' in {repo.resolve()}")
    off = start_server(tmp_path)
    try:
        off.wait("/health/ready", 200)
        response = admin(off, "en-de", "unload")
        assert response.status_code == 403 and "SERVICE_ADMIN_KEYS" in response.text
    finally:
        off.stop()


def test_reload_swaps_versions_and_a_bad_version_leaves_the_old_one_serving(
        server: Server, repo: Path) -> None:
    bad = copy_bundle("en-fr", repo / "en-fr" / "2")
    (bad / "spm.model").write_bytes(b"tampered")
    failed = admin(server, "en-fr", "reload")
    assert failed.status_code == 200
    body = failed.json()
    assert (body["version"], body["state"]) == ("1", "ready")
    assert "reload of version 2 failed" in body["reason"] and "spm.model was altered" in body[
        "reason"]
    assert translate(server, {"text": TEXTS[0], "model": "en-fr"}, **API).json()[
        "model_version"] == "1"
    shutil.rmtree(bad)
    copy_bundle("en-fr", repo / "en-fr" / "2")
    # Requests running across the switch finish, on the version that admitted them.
    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(translate, server, {"text": TEXTS * 16, "model": "en-fr"},
                               **API) for _ in range(3)]
        swapped = admin(server, "en-fr", "reload").json()
        answers = [r.result() for r in running]
    assert (swapped["version"], swapped["state"], swapped.get("reason")) == ("2", "ready", None)
    assert all(a.status_code == 200 for a in answers)
    assert {a.json()["model_version"] for a in answers} <= {"1", "2"}
    exposition = httpx.get(server.url + "/metrics").text  # the old version's series are gone
    assert 'translate_model_ready{model="en-fr",version="2"} 1.0' in exposition
    assert 'translate_model_ready{model="en-fr",version="1"}' not in exposition
    after = translate(server, {"text": TEXTS[0], "model": "en-fr"}, **API).json()
    assert (after["model_version"], after["translations"][0]["text"]) == (
        "2", served_here("en-fr", TEXTS[:1])[0])


def test_unload_lets_admitted_requests_finish_then_the_model_is_gone(server: Server) -> None:
    with ThreadPoolExecutor(4) as pool:
        running = [pool.submit(translate, server, {"text": TEXTS * 16, "model": "en-fr"},
                               **API) for _ in range(3)]
        deadline = time.monotonic() + 30
        while not (pending := model_pending(server, "en-fr")) and time.monotonic() < deadline:
            time.sleep(0.005)  # until en-fr's sentences are queued or running
        unloaded = admin(server, "en-fr", "unload")
        answers = [r.result() for r in running]
    assert pending > 0 and model_pending(server, "en-de") == 0  # its own gauge, not en-de's
    assert 'pending_sentences{model="en-fr"' not in httpx.get(server.url + "/metrics").text
    assert unloaded.status_code == 200 and unloaded.json()["state"] == "unloading"
    # every request admitted before the unload was answered; any that came after was refused
    assert {a.status_code for a in answers} <= {200, 422, 503}
    assert any(a.status_code == 200 for a in answers)
    gone = translate(server, {"text": TEXTS[0], "model": "en-fr"}, **API)
    assert gone.status_code == 422 and "served: en-de" in gone.text
    assert httpx.get(server.url + "/health/ready").json()["models"] == {"en-de": "ready"}
    loaded = admin(server, "en-fr", "load").json()
    assert (loaded["id"], loaded["version"], loaded["state"]) == ("en-fr", "2", "ready")
    assert translate(server, {"text": TEXTS[0], "target": "fr"}, **API).status_code == 200


def test_po_catalogs_go_to_the_model_of_their_language(server: Server, tmp_path: Path) -> None:
    catalog = polib.pofile(str(ROOT / "tests" / "data" / "po" / "swell-foop.po"))
    catalog.metadata["Language"] = "fr_FR"
    french = tmp_path / "fr.po"
    catalog.save(str(french))

    def fill(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.po.cli", str(french), "--url",
                               server.url, "--api-key", "api-secret", *args],
                              capture_output=True, text=True, timeout=300, cwd=ROOT)

    done = fill("--out", str(tmp_path / "fr.out.po"))
    assert done.returncode == 0, done.stderr
    filled = [e for e in polib.pofile(str(tmp_path / "fr.out.po")) if "fuzzy" in e.flags
              and "machine-translated" in e.tcomment]
    assert filled and all("en-fr-gru-bahdanau" in e.tcomment for e in filled)
    refused = fill("--target", "it", "--dry-run")  # a dry run contacts nobody
    assert refused.returncode == 0
    refused = fill("--target", "it", "--out", str(tmp_path / "it.po"))
    assert refused.returncode == 1 and "no model translating English into 'it'" in (
        refused.stderr) and "en-de (en -> de)" in refused.stderr


def test_on_demand_models_load_at_their_first_request_and_the_least_recent_goes(
        tmp_path: Path) -> None:
    srv = start_server(tmp_path, bundle=None, SERVICE_ON_DEMAND="en-fr,en-es",
                       SERVICE_MAX_LOADED_MODELS="2")  # models/: en-de at start, the others later
    try:
        assert srv.wait("/health/ready", 200).json()["models"] == {"en-de": "ready"}
        languages = httpx.get(srv.url + "/libretranslate/languages").json()
        assert languages[0]["targets"] == ["de", "es", "fr"]  # on-demand pairs are offered
        fr = translate(srv, {"text": TEXTS[0], "model": "en-fr"})
        assert fr.status_code == 200 and fr.json()["translations"][0]["text"] == (
            served_here("en-fr", TEXTS[:1])[0])
        assert "loading on-demand model en-fr" in srv.log()
        listed = {m["id"]: m for m in httpx.get(srv.url + "/models").json()["models"]}
        assert (listed["en-es"]["state"], listed["en-es"]["target"]) == ("unloaded", "es")
        assert "first request" in listed["en-es"]["reason"] and listed["en-fr"]["state"] == (
            "ready")
        es = translate(srv, {"text": TEXTS[0], "target": "es"})  # by pair: loads en-es
        assert es.status_code == 200 and es.json()["model"] == "en-es"
        deadline = time.monotonic() + 30  # en-fr, least recently used, is unloaded
        while time.monotonic() < deadline:
            ids = [m["id"] for m in httpx.get(srv.url + "/models").json()["models"]
                   if m["state"] != "unloaded"]
            if ids == ["en-de", "en-es"]:
                break
            time.sleep(0.05)
        assert ids == ["en-de", "en-es"]  # en-de is not on demand: it stays
        again = translate(srv, {"text": TEXTS[0], "model": "en-fr"})  # loads again
        assert again.status_code == 200 and again.json()["model"] == "en-fr"
        assert translate(srv, {"text": "x", "model": "en-it"}).status_code == 422
    finally:
        srv.stop()

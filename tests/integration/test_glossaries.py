"""Named glossaries over HTTP: loaded at start from SERVICE_GLOSSARY_DIR, a pair's default
applied to every request, others by glossary_id, on both API surfaces."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.glossary import Glossary
from service.translator import DecodeOptions, Translator
from tests.conftest import ROOT
from tests.integration.conftest import Server, start_server

TBX = """<?xml version="1.0" encoding="UTF-8"?>
<martif type="TBX-Basic"><text><body>
 <termEntry><langSet xml:lang="en"><tig><term>folder</term></tig></langSet>
  <langSet xml:lang="de"><tig><term>Verzeichnis</term></tig></langSet></termEntry>
</body></text></martif>"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    glossaries = tmp_path_factory.mktemp("glossaries")
    (glossaries / "en-de").mkdir()
    (glossaries / "en-de" / "default.csv").write_text(
        "source,target\nTrash,Papierkorb\nfolder,Ordner\n", encoding="utf-8")
    (glossaries / "en-de" / "legacy.tbx").write_text(TBX, encoding="utf-8")
    srv = start_server(tmp_path_factory.mktemp("server"), SERVICE_GLOSSARY_DIR=str(glossaries))
    try:
        srv.wait("/health/ready", 200)
        yield srv
    finally:
        srv.stop()


def translate(server: Server, body: dict[str, object]) -> httpx.Response:
    return httpx.post(server.url + "/translate", json=body, timeout=60)


def test_glossaries_are_listed(server: Server) -> None:
    listed = httpx.get(server.url + "/glossaries").json()["glossaries"]
    assert sorted((g["id"], g["source"], g["target"], g["entries"], g["default"])
                  for g in listed) == [("default", "en", "de", 2, True),
                                       ("legacy", "en", "de", 1, False)]


def test_the_default_glossary_applies_and_another_replaces_it(server: Server) -> None:
    text = "Move the folder to the trash"
    [default] = translate(server, {"text": text}).json()["translations"]
    assert sorted(t["target"] for t in default["terms"]) == ["Ordner", "Papierkorb"]
    [legacy] = translate(server, {"text": text, "glossary_id": "legacy"}).json()["translations"]
    assert [t["target"] for t in legacy["terms"]] == ["Verzeichnis"]
    [own] = translate(server, {"text": text, "glossary": {"trash": "Müll"}}).json()[
        "translations"]  # the request's entries win over the default glossary's
    assert sorted(t["target"] for t in own["terms"]) == ["Müll", "Ordner"]
    unknown = translate(server, {"text": text, "glossary_id": "nope"})
    assert unknown.status_code == 422
    assert "glossary 'nope' is not loaded for en -> de; loaded: default, legacy" in unknown.text


def test_terms_are_masked_and_a_setting_constrains_the_beam_search_instead(
        server: Server, tmp_path: Path) -> None:
    """SERVICE_GLOSSARY_METHOD: mask by default; constrain for beam search (greedy decoding
    still masks). SERVICE_GLOSSARY_MODEL_FIRST: on by default. The server answers what the
    library gives for each."""
    texts = ["Move the file to the trash", "Empty the trash folder", "Open the file"]
    glossary = {"trash": "Müll", "file": "Akte"}
    translator = Translator(ROOT / "models" / "en-de")

    def local(method: str, beam: int, entries: dict[str, str], model_first: bool = True
              ) -> list[str]:
        rows = translator.prepare(texts, glossary=Glossary(entries), method=method,
                                  model_first=model_first)
        return [t.best.text for t in translator.translate_prepared(
            rows, DecodeOptions(beam_size=beam)).translations]

    def served(beam: int, srv: Server = server, entries: dict[str, str] = glossary
               ) -> list[str]:
        answer = translate(srv, {"text": texts, "glossary": entries, "beam_size": beam})
        return [t["text"] for t in answer.json()["translations"]]

    def redecoded() -> float:
        metric = 'translate_glossary_redecoded_total{model="en-de",version="1"} '
        [line] = [x for x in httpx.get(server.url + "/metrics").text.splitlines()
                  if x.startswith(metric)]
        return float(line.removeprefix(metric))

    with_default = {"folder": "Ordner", **glossary}  # the request's "trash" wins the default's
    assert served(4) == local("mask", 4, with_default)
    kept = {"trash": "Papierkorb", "file": "Datei"}  # the model's own words in the first text
    before = redecoded()
    assert served(4, entries=kept) == local("mask", 4, {"folder": "Ordner", **kept}) != local(
        "mask", 4, {"folder": "Ordner", **kept}, model_first=False)
    rows = translator.prepare(texts, glossary=Glossary({"folder": "Ordner", **kept}),
                              model_first=True)
    again = translator.translate_prepared(rows, DecodeOptions(beam_size=4)).stats.redone
    assert redecoded() - before == again > 0  # the metric counts texts decoded again
    constraining = start_server(tmp_path, SERVICE_GLOSSARY_METHOD="constrain",  # no named ones
                                SERVICE_GLOSSARY_MODEL_FIRST="false")
    try:
        constraining.wait("/health/ready", 200)
        assert served(4, constraining) == local("constrain", 4, glossary, False) != local(
            "mask", 4, glossary, False)
        assert served(1, constraining) == local("mask", 1, glossary, False)
    finally:
        constraining.stop()


def test_libretranslate_takes_glossary_and_glossary_id(server: Server) -> None:
    lt = server.url + "/libretranslate/translate"
    plain = httpx.post(lt, json={"q": "Empty the trash", "source": "en", "target": "de"})
    assert "Papierkorb" in plain.json()["translatedText"]  # the default glossary
    own = httpx.post(lt, json={"q": "Empty the trash", "source": "en", "target": "de",
                               "glossary": {"trash": "Abfalleimer"}})
    assert "Abfalleimer" in own.json()["translatedText"]
    bad = httpx.post(lt, json={"q": "x", "source": "en", "target": "de", "glossary": ["a"]})
    assert bad.status_code == 400 and "glossary must be an object" in bad.text


def test_a_bad_glossary_file_keeps_the_service_not_ready_saying_why(tmp_path: Path) -> None:
    (tmp_path / "en-de").mkdir()
    (tmp_path / "en-de" / "bad.tsv").write_text("Save %s\tSpeichern %s\n", encoding="utf-8")
    srv = start_server(tmp_path, SERVICE_GLOSSARY_DIR=str(tmp_path))
    try:
        deadline = time.monotonic() + 30
        while "loading" in (text := srv.wait("/health/ready", 503).text) and (
                time.monotonic() < deadline):
            time.sleep(0.1)
        assert "en-de/bad.tsv" in text and "SERVICE_GLOSSARY_DIR" in text
    finally:
        srv.stop()

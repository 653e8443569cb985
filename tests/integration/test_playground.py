"""The attention playground (``GET /``) in a real browser: Debian's chromium driven by Playwright.

The page uses only the public API, so every check compares what the page shows with what
``POST /translate`` answers for the same input (the text depends on the model shipped).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.alignment import group_words
from tests.conftest import ROOT
from tests.integration.conftest import CHROMIUM, Server, start_server

try:
    from playwright.sync_api import Browser, Error, Page
except ImportError:
    pytest.skip("playwright is not installed: pip install playwright (the dev extra has it)",
                allow_module_level=True)

if not CHROMIUM.is_file():
    pytest.skip(f"{CHROMIUM} is missing: make tools installs Debian's chromium "
                "(it needs root)", allow_module_level=True)

ARTIFACTS = ROOT / "artifacts"
SENTENCE = "Save the document as a new file."


@contextmanager
def open_page(browser: Browser, url: str) -> Iterator[Page]:
    """The playground at ``url``; a script error on the page fails the test."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[Error] = []
    page.on("pageerror", lambda error: errors.append(error))
    page.goto(url + "/")
    try:
        yield page
    finally:
        page.close()
    assert not errors, f"script errors on the page: {errors}"


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    with open_page(browser, server.url) as page:
        yield page


def submit(page: Page, text: str, beam: int, n_best: int) -> None:
    """Type, pick the beam size, press Translate and wait for a result or an error."""
    page.fill("#text", text)
    page.fill("#beam", str(beam))
    page.fill("#nbest", str(n_best))
    page.click("#submit")
    page.wait_for_selector("#app[data-state=done], #app[data-state=error]")


def api(server: Server, text: str, beam: int, n_best: int) -> dict[str, Any]:
    """The best translation the API gives for what the page sent."""
    response = httpx.post(server.url + "/translate", timeout=60, json={
        "text": text, "beam_size": beam, "n_best": n_best,
        "return_attention": True, "return_alignment": True})
    response.raise_for_status()
    translation: dict[str, Any] = response.json()["translations"][0]
    return translation


def classes(page: Page, selector: str) -> list[str]:
    return (page.get_attribute(selector, "class") or "").split()


def indices(page: Page, selector: str, key: str) -> set[int]:
    """The ``data-<key>`` indices of the elements that match ``selector``."""
    return {int(page.locator(selector).nth(i).get_attribute(f"data-{key}") or -1)
            for i in range(page.locator(selector).count())}


def strongest(weights: list[float]) -> set[int]:
    """The tokens the page should mark: at least half the strongest weight."""
    top = max(weights)
    return {i for i, w in enumerate(weights) if w / top >= 0.5}


def test_translation_heatmap_and_hover(page: Page, server: Server) -> None:
    model = httpx.get(server.url + "/model").json()
    page.wait_for_selector("#model[data-state=ready]")
    assert page.text_content("#model") == (
        f"{model['source_lang']} → {model['target_lang']} · {model['model_id']}")
    submit(page, SENTENCE, beam=4, n_best=3)
    assert page.get_attribute("#app", "data-state") == "done"
    expected = api(server, SENTENCE, beam=4, n_best=3)

    assert page.text_content("#translation") == expected["text"]
    assert page.locator("#alternatives .alt-text").all_text_contents() == [
        alt["text"] for alt in expected["alternatives"]]
    assert "ms total" in (page.text_content("#meta") or "")

    source, target = expected["source_tokens"], expected["target_tokens"]
    attention: list[list[float]] = expected["attention"]
    S, T = len(source), len(target)
    assert page.locator("#heatmap .cell").count() == T * S
    assert page.locator(f'#heatmap .cell[data-row="{T - 1}"][data-col="{S - 1}"]').count() == 1
    assert page.locator("#heatmap .tok.src").all_text_contents() == source
    assert page.locator("#heatmap .tok.tgt").all_text_contents() == target
    assert page.locator("#alignment tr").count() == len(expected["alignment"])

    # A source token highlights the target tokens that attend to it ...
    column = [row[S // 2] for row in attention]
    page.hover(f'#heatmap .tok.src[data-col="{S // 2}"]')
    assert "active" in classes(page, f'#heatmap .tok.src[data-col="{S // 2}"]')
    assert indices(page, "#heatmap .tok.tgt.attended", "row") == strongest(column)

    # An alignment link highlights the pieces of its two words ...
    if expected["alignment"]:
        link = expected["alignment"][0]
        page.hover("#alignment tr >> nth=0")
        assert indices(page, "#heatmap .tok.tgt.active", "row") == set(
            group_words(target)[link["target"]])
        assert indices(page, "#heatmap .tok.src.active", "col") == set(
            group_words(source)[link["source"]])

    # ... and a cell highlights its target token and the source tokens that token attends to.
    r = min(2, T - 1)
    c = attention[r].index(max(attention[r]))
    page.hover(f'#heatmap .cell[data-row="{r}"][data-col="{c}"]')
    assert "focus" in classes(page, f'#heatmap .cell[data-row="{r}"][data-col="{c}"]')
    assert "active" in classes(page, f'#heatmap .tok.tgt[data-row="{r}"]')
    assert "attended" in classes(page, f'#heatmap .tok.src[data-col="{c}"]')
    assert indices(page, "#heatmap .tok.src.attended", "col") == strongest(attention[r])
    assert target[r] in (page.text_content("#readout") or "")

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "playground.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_greedy_then_api_errors_shown_plainly(page: Page, server: Server) -> None:
    submit(page, SENTENCE, beam=1, n_best=1)
    assert page.text_content("#translation") == api(server, SENTENCE, beam=1, n_best=1)["text"]
    assert page.locator("#alternatives-box").is_hidden()

    submit(page, "x" * 2001, beam=1, n_best=1)
    assert page.get_attribute("#app", "data-state") == "error"
    assert page.locator("#result").is_hidden()
    assert "413 limit_exceeded" in (page.text_content("#error-title") or "")
    assert page.text_content("#error-message") == (
        "text 0 has 2001 characters; the limit is 2000 (SERVICE_MAX_TEXT_CHARS)")

    submit(page, SENTENCE, beam=9, n_best=1)
    assert "422" in (page.text_content("#error-title") or "")
    assert "beam_size 9 exceeds the limit 8" in (page.text_content("#error-message") or "")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "playground-error.png")

    submit(page, SENTENCE, beam=2, n_best=1)
    assert page.locator("#error").is_hidden() and page.locator("#result").is_visible()


def test_not_ready_is_shown(browser: Browser, tmp_path: Path) -> None:
    missing = start_server(tmp_path, bundle=tmp_path / "no-such-bundle")
    try:
        with open_page(browser, missing.url) as page:
            page.wait_for_selector("#model[data-state=waiting]")
            assert page.text_content("#model") == "model loading…"
            submit(page, SENTENCE, beam=1, n_best=1)
            assert "503 not_ready" in (page.text_content("#error-title") or "")
            assert "no-such-bundle" in (page.text_content("#error-message") or "")
            assert "Retry after 1 s" in (page.text_content("#error-meta") or "")
    finally:
        missing.stop()



def test_api_key_is_asked_for_then_used(browser: Browser, tmp_path: Path) -> None:
    keyed = start_server(tmp_path, SERVICE_API_KEYS="k-123")
    try:
        keyed.wait("/health/ready", 200)
        with open_page(browser, keyed.url) as page:
            page.wait_for_selector("#model[data-state=error]")  # 401 on /model: no retry loop
            assert page.text_content("#model") == "enter an API key to see the model"
            page.fill("#key", "wrong")
            page.dispatch_event("#key", "change")
            page.wait_for_selector("#model:text('the API key is not valid')")
            page.fill("#key", "k-123")
            page.dispatch_event("#key", "change")
            page.wait_for_selector("#model[data-state=ready]")
            submit(page, SENTENCE, beam=1, n_best=1)
            assert page.get_attribute("#app", "data-state") == "done"
    finally:
        keyed.stop()


def test_the_model_picker_translates_with_the_model_chosen(browser: Browser,
                                                           tmp_path: Path) -> None:
    repository = start_server(tmp_path, bundle=None)  # models/: every shipped model
    try:
        repository.wait("/health/ready", 200)
        listed = httpx.get(repository.url + "/models").json()["models"]
        with open_page(browser, repository.url) as page:
            page.wait_for_selector("#model[data-state=ready]")
            options = page.locator("#models option")
            assert options.all_text_contents() == [
                f"{m['source']} → {m['target']} · {m['id']}" for m in listed]
            assert page.input_value("#models") == "en-de"  # the default model first
            page.select_option("#models", "en-fr")
            fr = next(m for m in listed if m["id"] == "en-fr")
            assert page.text_content("#model") == f"en → fr · {fr['model_id']}"
            submit(page, SENTENCE, beam=2, n_best=1)
            answer = httpx.post(repository.url + "/translate", timeout=60, json={
                "text": SENTENCE, "beam_size": 2, "model": "en-fr"}).json()
            assert page.text_content("#translation") == answer["translations"][0]["text"]
            assert page.get_attribute("#translation", "lang") == "fr"
            assert (page.text_content("#meta") or "").endswith("· en-fr")
    finally:
        repository.stop()


def test_glossary_terms_are_sent_and_highlighted(page: Page, server: Server) -> None:
    page.click("#glossary-box summary")
    page.fill("#glossary", "trash = Papierkorb\nfile\tDatei\n")
    submit(page, "Move the file to the trash", beam=4, n_best=1)
    assert page.get_attribute("#app", "data-state") == "done"
    marks = page.locator("#translation mark.term")
    assert sorted(marks.all_text_contents()) == ["Datei", "Papierkorb"]
    answer = httpx.post(server.url + "/translate", timeout=60, json={
        "text": "Move the file to the trash", "beam_size": 4,
        "glossary": {"trash": "Papierkorb", "file": "Datei"}}).json()
    assert page.text_content("#translation") == answer["translations"][0]["text"]
    assert "glossary: trash → Papierkorb" in [marks.nth(i).get_attribute("title")
                                              for i in range(marks.count())]

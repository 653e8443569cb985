"""README.md shows what the current models and service do: its generated blocks are what
`make docs` (scripts/make_docs.py) would write now."""

from __future__ import annotations

import importlib.util
import json
import re

import httpx

from tests.conftest import ROOT
from tests.integration.conftest import Server

_spec = importlib.util.spec_from_file_location("make_docs", ROOT / "scripts" / "make_docs.py")
assert _spec and _spec.loader
make_docs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_docs)
README = (ROOT / "README.md").read_text("utf-8")


def test_the_models_table_is_the_manifests() -> None:
    assert make_docs.block(README, "models") == make_docs.models_table(), "run `make docs`"
    assert make_docs.block(README, "shortlist") == make_docs.shortlist_sentence(), (
        "run `make docs`")


def test_the_quick_start_shows_what_the_service_answers(server: Server) -> None:
    shown = json.loads(make_docs.block(README, "quickstart").removeprefix("```json\n")
                       .removesuffix("\n```"))
    answer = httpx.post(server.url + "/translate", json=make_docs.QUICKSTART, timeout=60).json()
    assert (shown["model"], shown["model_version"]) == (answer["model"],
                                                       answer["model_version"]), "run `make docs`"
    # The same text; the score within what another CPU's int8 rounding may move it.
    assert [t["text"] for t in shown["translations"]] == [
        t["text"] for t in answer["translations"]], "run `make docs`"
    for was, now in zip(shown["translations"], answer["translations"], strict=True):
        assert abs(was["score"] - now["score"]) <= 0.01, "run `make docs`"
    # and the curl line above it sends that request
    curl = re.search(r"-d '(\{.*?\})'", README[: README.index("<!-- quickstart -->")])
    assert curl and json.loads(curl.group(1)) == make_docs.QUICKSTART

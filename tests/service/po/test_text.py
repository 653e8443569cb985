"""Accelerators, lines, layout and stand-ins around the server's placeholder masking."""

from __future__ import annotations

import pytest

from service.placeholders import find_placeholders
from service.po.text import (
    Accelerator,
    all_placeholders,
    assemble,
    detect_marker,
    marker_positions,
    place_accelerator,
    prepare,
    split_line,
    strip_accelerator,
)


def test_detects_the_catalogs_marker() -> None:
    assert detect_marker(["_Open", "Save _As", "R&D", "Tasten_kombinationen"]) == "_"
    assert detect_marker(["&Open", "Save &As", "Print"]) == "&"
    assert detect_marker(["~Open", "Save ~As", "file_name"]) == "~"
    assert detect_marker(["Open", "Tom & Jerry", "100 %"]) is None


@pytest.mark.parametrize("text", ["%(file_name)s", "{file_name}", "LC_ALL is set", "__init__",
                                  "$(ARG_1)", "snake__case"])
def test_underscores_that_are_not_accelerators(text: str) -> None:
    assert marker_positions(text, "_") == []


def test_ampersand_entities_and_doubled_ampersands_are_not_accelerators() -> None:
    assert marker_positions("Fish &amp; Chips", "&") == []
    assert marker_positions("Fish && &Chips", "&") == [8]


def test_strips_one_accelerator_and_remembers_its_letter_and_line() -> None:
    assert strip_accelerator("A_ppearance", "_") == ("Appearance", Accelerator("_", "p", 0))
    assert strip_accelerator("Intro\n_Next", "_") == ("Intro\nNext", Accelerator("_", "N", 1))
    assert strip_accelerator("_One _Two", "_") == ("_One _Two", None)  # ambiguous: left alone
    assert strip_accelerator("_Open", None) == ("_Open", None)


@pytest.mark.parametrize(("text", "letter", "expected"), [
    ("Hilfe", "H", "_Hilfe"),                       # same letter
    ("Spiel beginnen", "P", "S_piel beginnen"),     # same letter, case-insensitive
    ("Datei öffnen", "O", "_Datei öffnen"),          # letter absent: the first letter
    ("Neues Spiel", "s", "Neues _Spiel"),            # a word start before an inner match
    ("%s speichern", "s", "%s _speichern"),          # never inside a placeholder
    ("%s", "s", "%s"),                               # nowhere to put it
])
def test_places_the_accelerator(text: str, letter: str, expected: str) -> None:
    assert place_accelerator(text, "_", letter) == expected


def test_split_line_keeps_whitespace_colon_and_ellipsis_out_of_the_text() -> None:
    line = split_line("  File name: ")
    assert (line.lead, line.text, line.tail) == ("  ", "File name", ": ")
    assert split_line("Open…").tail == "…" and split_line("Save As...").tail == "..."
    assert split_line(" … ").text == ""  # nothing for the model


def test_stand_ins_only_for_what_the_server_does_not_mask() -> None:
    line = split_line("%(count)d of %1$s, %ld bytes, 100%%, {n:>3} and %s {name}")
    assert line.text == "{_0} of {_1}, {_2} bytes, 100{_3}, {_4} and %s {name}"
    # each stand-in is one placeholder to the server, so the model keeps it verbatim
    assert find_placeholders(line.text) == ["{_0}", "{_1}", "{_2}", "{_3}", "{_4}", "%s",
                                            "{name}"]
    assert split_line("{_0} and %1$s").text == "{_0} and {__0}"  # no clash with the text


def test_all_placeholders_counts_each_once() -> None:
    assert all_placeholders("%1$s and %s, %s") == {"%1": 1, "%1$s": 1, "%s": 2}


def test_multi_line_text_is_translated_line_by_line() -> None:
    prepared = prepare("Clear the board.\n\n  Fewer clicks:\n", None)
    assert prepared.texts == ["Clear the board.", "Fewer clicks"]
    out = assemble(prepared, ["Leeren Sie das Brett.", "Weniger Klicks"])
    assert out == "Leeren Sie das Brett.\n\n  Weniger Klicks:\n"


def test_assemble_restores_stand_ins_accelerator_and_does_not_double_the_colon() -> None:
    prepared = prepare("_Save as %(name)s:", "_")
    assert prepared.texts == ["Save as {_0}"]
    assert assemble(prepared, ["Speichern unter {_0}:"]) == "_Speichern unter %(name)s:"


def test_accelerator_goes_back_on_its_line() -> None:
    prepared = prepare("Welcome\nPress _Start", "_")
    assert assemble(prepared, ["Willkommen", "Klicken auf Start"]) == (
        "Willkommen\nKlicken auf _Start")


@pytest.mark.parametrize("source", [
    "_Keyboard Shortcuts", "Score: %u", "%s, %d colors", "Black is Thinking…",
    "Clear as many blocks as you can.\nFewer clicks means more points.",
    "  %(count)d files of %1$s  ", "_Save Game As…", "game;logic;board;same;matching;"])
def test_an_identity_translation_gives_the_source_back(source: str) -> None:
    prepared = prepare(source, "_")
    assert assemble(prepared, prepared.texts) == source

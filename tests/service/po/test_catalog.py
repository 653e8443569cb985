"""Choosing the entries to fill, filling them, and writing only those back."""

from __future__ import annotations

from pathlib import Path

import polib
import pytest

from service.po.catalog import fill, plan, render, untranslated_forms

HEADER = '''# A catalog written by hand, wrapped as no tool would wrap it.
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Plural-Forms: nplurals={n}; plural=(n != 1);\\n"

'''
BODY = '''#: src/a.c:1
#, c-format
msgid "Open %s"
msgstr ""

# a translator's note
msgid "Save"
msgstr "Spei"
"chern"

#, fuzzy
msgid "Close"
msgstr "Schließen?"

#, fuzzy
msgid "Quit"
msgstr ""

msgctxt "menu"
msgid "_File"
msgstr ""

msgid "%d file"
msgid_plural "%d files"
msgstr[0] ""
msgstr[1] ""
msgid "translator-credits"
msgstr ""

#~ msgid "Old"
#~ msgstr ""
'''
GERMAN = {"Open %s": "%s öffnen", "Quit": "Beenden", "File": "Datei", "%d file": "%d Datei",
          "%d files": "%d Dateien"}


def catalog_file(tmp_path: Path, nplurals: int = 2) -> Path:
    path = tmp_path / "de.po"
    path.write_text(HEADER.format(n=nplurals) + BODY, encoding="utf-8")
    return path


def test_plans_the_untranslated_entries_only(tmp_path: Path) -> None:
    catalog = polib.pofile(str(catalog_file(tmp_path)))
    tasks = plan(catalog, "_")
    # translated, fuzzy-translated, translator-credits and obsolete entries are left alone
    assert [(t.entry.msgctxt, t.entry.msgid) for t in tasks] == [
        (None, "Open %s"), (None, "Quit"), ("menu", "_File"), (None, "%d file")]
    [file_task] = [t for t in tasks if t.entry.msgctxt == "menu"]
    assert file_task.forms[None][1].texts == ["File"]  # the accelerator is stripped


@pytest.mark.parametrize(("nplurals", "expected"), [
    (2, {0: "%d file", 1: "%d files"}),
    (3, {0: "%d file", 1: "%d files", 2: "%d files"}),  # Polish, Russian: a translator inflects
    (1, {0: "%d files"}),                                # Japanese: one form, the plural
])
def test_plural_forms_follow_the_header(nplurals: int, expected: dict[int, str]) -> None:
    entry = polib.POEntry(msgid="%d file", msgid_plural="%d files",
                          msgstr_plural={i: "" for i in range(nplurals)})
    assert untranslated_forms(entry, nplurals) == expected


def test_a_partly_translated_plural_gets_only_its_empty_forms() -> None:
    entry = polib.POEntry(msgid="%d file", msgid_plural="%d files",
                          msgstr_plural={0: "%d plik", 1: "", 2: ""})
    assert untranslated_forms(entry, 3) == {1: "%d files", 2: "%d files"}


def test_fills_marks_fuzzy_and_keeps_every_other_line_byte_for_byte(tmp_path: Path) -> None:
    path = catalog_file(tmp_path)
    catalog = polib.pofile(str(path))
    filled = fill(plan(catalog, "_"), GERMAN, "machine-translated by m (int8): review")
    assert len(filled.entries) == 4 and not filled.rejected
    out = render(path, catalog, filled.entries)

    original = path.read_text(encoding="utf-8")
    for untouched in ('# a translator\'s note\nmsgid "Save"\nmsgstr "Spei"\n"chern"\n',
                      '#, fuzzy\nmsgid "Close"\nmsgstr "Schließen?"\n',
                      'msgid "translator-credits"\nmsgstr ""\n\n#~ msgid "Old"\n#~ msgstr ""\n'):
        assert untouched in original and untouched in out
    assert out.startswith(HEADER.format(n=2))
    assert ('\n# machine-translated by m (int8): review\n#: src/a.c:1\n#, fuzzy, c-format\n'
            'msgid "Open %s"\nmsgstr "%s öffnen"\n\n# a translator') in out
    parsed = {(e.msgctxt, e.msgid): e for e in polib.pofile(out)}
    assert parsed[(None, "Open %s")].msgstr == "%s öffnen"
    assert parsed[(None, "Open %s")].flags == ["fuzzy", "c-format"]
    assert parsed[("menu", "_File")].msgstr == "_Datei"
    assert parsed[(None, "Quit")].flags == ["fuzzy"]  # not twice
    assert parsed[(None, "%d file")].msgstr_plural == {0: "%d Datei", 1: "%d Dateien"}
    assert all(parsed[k].tcomment.endswith("review") for k in
               [(None, "Open %s"), (None, "Quit"), ("menu", "_File"), (None, "%d file")])
    assert parsed[(None, "Save")].tcomment == "a translator's note"


def test_an_entry_that_would_lose_a_placeholder_stays_empty(tmp_path: Path) -> None:
    path = catalog_file(tmp_path)
    catalog = polib.pofile(str(path))
    filled = fill(plan(catalog, "_"), {**GERMAN, "Open %s": "Öffnen"}, "note")
    assert filled.rejected == {"Open %s": "lost placeholders ['%s']"}
    assert "Open %s" not in {e.msgid for e in filled.entries}


def test_an_entry_with_a_refused_line_stays_empty(tmp_path: Path) -> None:
    path = catalog_file(tmp_path)
    catalog = polib.pofile(str(path))
    translations = {k: v for k, v in GERMAN.items() if k != "%d files"}
    filled = fill(plan(catalog, "_"), translations, "note")
    assert list(filled.rejected) == ["%d file"]
    assert render(path, catalog, filled.entries).count('msgstr[1] ""') == 1

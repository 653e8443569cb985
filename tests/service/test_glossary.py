"""Glossaries: which terms a text holds, how they are masked, and where they come out."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polib
import pytest

from service.alignment import align
from service.glossary import MAX_ENTRIES, Glossary, GlossaryError, load_glossaries, read_glossary
from service.placeholders import AppliedTerm, Masked, TermSpan, mask, unmask_terms
from service.translator import Candidate, DecodeOptions, Prepared, Translator, find_terms
from tests.conftest import DEFAULT_BUNDLE

G = Glossary({"Trash": "Papierkorb", "file": "Datei", "file manager": "Dateiverwaltung",
              "Sort Ascending": "Aufsteigend sortieren"})


def found(text: str) -> list[tuple[str, str]]:
    return [(text[t.start:t.end], t.target) for t in G.find(text)]


def test_whole_words_any_case_longest_first_multi_word_and_punctuation() -> None:
    assert found("Move the file to the TRASH.") == [("file", "Datei"), ("TRASH", "Papierkorb")]
    assert found("Open the File  Manager") == [("File  Manager", "Dateiverwaltung")]
    assert found("Trashed files, a profile") == []  # whole words only
    assert found("(file)") == [("file", "Datei")]
    assert found("sort ascending: file") == [("sort ascending", "Aufsteigend sortieren"),
                                             ("file", "Datei")]


def test_merged_glossaries_match_as_one() -> None:
    """A request's own entries on a named glossary find what one glossary of both would:
    the longest term at each position, the own entry winning a shared term, and a term that
    starts inside another glossary's match found once that match is superseded."""
    base = Glossary({"a b": "AB", "b c d": "BCD", "Trash": "Papierkorb", "ß-Taste": "Eszett"})
    own = Glossary({"x a": "XA", "trash": "Müll"})
    both = Glossary({"a b": "AB", "b c d": "BCD", "x a": "XA", "trash": "Müll",
                     "ß-Taste": "Eszett"})
    for text in ("x a b c d", "a b c d", "Empty the Trash", "x  A b", "Die ß-TASTE"):
        assert base.merged(own).find(text) == both.find(text), text
    assert [t.target for t in base.merged(own).find("x a b c d")] == ["XA", "BCD"]
    assert [t.target for t in base.merged(own).find("the trash")] == ["Müll"]
    assert len(base.merged(own)) == 5


def test_text_inside_placeholders_never_matches() -> None:
    assert found('<a href="file">file</a> ${file} {file} $(file)') == [("file", "Datei")]
    assert found("Trash%s") == [("Trash", "Papierkorb")]  # next to a placeholder: matches


@pytest.mark.parametrize(("entries", "message"), [
    ({"": "x"}, "entry '': the source term is empty"),
    ({"Trash": " "}, "entry 'Trash': the target term is empty"),
    ({"a" * 101: "b"}, "the source term has 101 characters; the limit is 100"),
    ({"Save %s": "Speichern %s"}, "entry 'Save %s': the source term contains a placeholder"),
    ({"Trash": "Papierkorb", "trash": "Müll"}, "'Trash' and 'trash' are the same term"),
    ({f"t{i}": "x" for i in range(MAX_ENTRIES + 1)}, "257 entries; the limit is 256"),
])
def test_unusable_entries_are_refused_naming_them(entries: dict[str, str], message: str) -> None:
    with pytest.raises(GlossaryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Glossary(entries)


def test_terms_are_masked_like_placeholders_and_come_back_as_target_terms() -> None:
    text = "Move %s from the trash to the Trash"
    masked = mask(text, G.find(text))
    assert masked.text == "Move <ph0> from the <ph1> to the <ph1>"
    assert masked.placeholders == ("%s", "Papierkorb")
    assert [(i, term, span) for i, term, span in masked.terms] == [
        (1, "Trash", (17, 22)), (1, "Trash", (30, 35))]
    out, applied = unmask_terms("<ph1> nach <ph0> und <ph1>", masked)
    assert out == "Papierkorb nach %s und Papierkorb"
    assert [(a.source_span, a.target_span, out[slice(*a.target_span)]) for a in applied] == [
        ((17, 22), (0, 10), "Papierkorb"), ((30, 35), (23, 33), "Papierkorb")]
    assert mask(text) == mask(text, [])  # no glossary: placeholders only, as before


def test_a_term_starting_the_output_gets_a_capital() -> None:
    lower = Glossary({"trash": "papierkorb"})
    masked = mask("trash", lower.find("trash"))
    assert unmask_terms("<ph0> leeren", masked)[0] == "Papierkorb leeren"
    assert unmask_terms("den <ph0> leeren", masked)[0] == "den papierkorb leeren"


def test_a_term_is_never_glued_to_a_word_or_number() -> None:
    """An owed term appended last may come right after a placeholder or word."""
    masked = mask("Saving failed.\n%1", Glossary({"Saving": "Enregistrement"}).find(
        "Saving failed.\n%1"))
    text, [term] = unmask_terms("Échec.<ph1><ph2><ph0>", masked)
    assert text == "Échec.\n%1 Enregistrement"
    assert text[slice(*term.target_span)] == "Enregistrement"
    text, [term] = unmask_terms("a<ph0>b", mask("Saving", Glossary({"Saving": "E"}).find(
        "Saving")))
    assert (text, term.target_span) == ("a E b", (2, 3))
    assert unmask_terms("(<ph0>).", mask("Saving", Glossary({"Saving": "E"}).find(
        "Saving")))[0] == "(E)."  # punctuation stays where it was


TEXTS = ["Move the file to the trash", "Empty Trash", "Open the file manager",
         "Delete the file %s and the file %d?", "The trash is full."]


@pytest.fixture(scope="module")
def translator() -> Translator:
    return Translator(DEFAULT_BUNDLE)


def test_every_term_comes_out_as_often_as_the_text_has_it(translator: Translator) -> None:
    rows = translator.prepare(TEXTS, glossary=G)
    for beam in (1, 4):
        for text, t in zip(TEXTS, translator.translate_prepared(rows, DecodeOptions(
                beam_size=beam)).translations, strict=True):
            expected = sorted(target for _, target in found(text))
            assert sorted(a.target.lower() for a in t.best.terms) == [
                e.lower() for e in expected], (text, t.best.text)
            for a in t.best.terms:
                assert t.best.text[slice(*a.target_span)] == a.target
            assert "%s" in t.best.text if "%s" in text else True


def test_a_glossary_changes_only_its_own_texts(translator: Translator) -> None:
    """Batch invariance: a text with a glossary, batched with texts without one, comes out
    as it does alone; the texts without one come out as they do without any glossary."""
    plain = translator.prepare(TEXTS)
    with_terms = translator.prepare(TEXTS[:1], glossary=G)
    together = translator.translate_prepared([*with_terms, *plain[1:]],
                                             DecodeOptions(beam_size=4)).translations
    alone = translator.translate_prepared(with_terms, DecodeOptions(beam_size=4)).translations
    unglossed = translator.translate_prepared(plain, DecodeOptions(beam_size=4)).translations
    assert together[0].best.token_ids == alone[0].best.token_ids
    assert [t.best.text for t in together[1:]] == [t.best.text for t in unglossed[1:]]
    assert together[0].best.terms and not any(t.best.terms for t in together[1:])


def test_the_constrained_search_emits_each_term_and_leaves_other_texts_alone(
        translator: Translator) -> None:
    """The lexically constrained alternative (``method="constrain"``, what the terminology
    evaluation compares with masking): every term's pieces in the output, found and
    reported; a constrained text comes out as it does alone; the others as without it."""
    rows = translator.prepare(TEXTS, glossary=G, method="constrain")
    assert all(row.masked.terms == () for row in rows)  # nothing masked: the search does it
    together = translator.translate_prepared(rows[:1] + translator.prepare(TEXTS[1:]),
                                             DecodeOptions(beam_size=4)).translations
    alone = translator.translate_prepared(rows[:1], DecodeOptions(beam_size=4)).translations
    assert together[0].best.token_ids == alone[0].best.token_ids
    assert [t.best.text for t in together[1:]] == [
        t.best.text for t in translator.translate(TEXTS[1:])]
    decoded = translator.translate_prepared(rows, DecodeOptions(beam_size=4)).translations
    assert all(t.best.ended for t in decoded)
    for text, t in zip(TEXTS, decoded, strict=True):
        expected = sorted(target for _, target in found(text))
        assert sorted(a.target.lower() for a in t.best.terms) == [e.lower() for e in expected]
        for a in t.best.terms:
            assert t.best.text[slice(*a.target_span)] == a.target
    [first] = translator.translate_prepared(rows[:1], DecodeOptions(
        beam_size=4, attention=True)).translations  # each term's place known, not guessed
    source, target, _ = translator.attention_of(first)
    known = translator.term_pieces(first)
    spelled = " ".join(a.target for a in first.best.terms)
    assert known and all(target[i].strip("▁") in spelled for i in known)
    assert all(source[j].strip("▁").lower() in {w.lower() for a in first.best.terms
                                                for w in a.source.split()} for j in known.values())
    with pytest.raises(ValueError, match="unknown glossary method 'regex'"):
        translator.prepare(TEXTS, glossary=G, method="regex")


def test_the_models_own_translation_stands_where_it_has_every_term(
        translator: Translator) -> None:
    """Model first (the service's default): where the plain search's best translation holds
    every term, as often as the text and in the glossary's case (or starting the output with
    a capital), it is the answer; texts none of whose candidates has them are decoded again
    with their terms enforced (masked: at the options' narrower fallback beam). Each comes
    out as it does alone."""
    glossary = Glossary({"Trash": "Papierkorb", "file": "Datei", "full": "randvoll"})
    options = DecodeOptions(beam_size=4)
    plain = translator.translate(TEXTS, replace(options, n_best=options.beam_size))
    # Which of the plain beam's candidates (best first) have every term, read off this
    # machine's outputs: e.g. "Dateiverwaltung" is not the term "Datei", "voll" not "randvoll"
    terms = [row.terms for row in translator.prepare(TEXTS, glossary=glossary, model_first=True)]
    holding = [[c.text for c in p.candidates if len(find_terms(c.text, t)[1]) == len(t)]
               for p, t in zip(plain, terms, strict=True)]
    own = [h[:1] == [p.best.text] for h, p in zip(holding, plain, strict=True)]
    assert any(own) and not all(holding), "texts with and without the terms of their own"
    for method in ("mask", "constrain"):
        again = options.fallback_beam if method == "mask" else options.beam_size
        enforced = translator.translate_prepared(translator.prepare(
            TEXTS, glossary=glossary, method=method), replace(
                options, beam_size=again)).translations
        rows = translator.prepare(TEXTS, glossary=glossary, method=method, model_first=True)
        decoded = translator.translate_prepared(rows, options)
        first = decoded.translations
        assert decoded.stats.redone == sum(not h for h in holding)
        assert [f.best.text == p.best.text for f, p in zip(first, plain, strict=True)] == own
        for f, e, p, h in zip(first, enforced, plain, holding, strict=True):
            assert f.best.text == (h[0] if h else e.best.text)
            assert f.masked == (p.masked if h else e.masked)  # what it was decoded from
        for text, f in zip(TEXTS, first, strict=True):
            assert len(f.best.terms) == len(glossary.find(text)), f.best.text
        redone = [not h for h in holding].index(True)
        alone = translator.translate_prepared(rows[redone:redone + 1], options).translations
        assert alone[0].best.token_ids == first[redone].best.token_ids


def test_model_first_keeps_the_best_candidates_that_have_every_term() -> None:
    terms = (TermSpan(0, 5, "Trash", "Papierkorb"), TermSpan(9, 13, "file", "Datei"))
    row = Prepared(Masked("Trash the file", ()), [1, 2, 3], terms, fallback=Prepared(
        Masked("<ph0> the <ph1>", ()), [4, 5, 6]))

    def candidate(text: str, found: int) -> Candidate:
        applied = [AppliedTerm(t.source, t.target, (t.start, t.end), (0, 1))
                   for t in terms[:found]]
        return Candidate(text, 0.0, [], None, True, applied)

    beam = [candidate("a", 1), candidate("b", 2), candidate("c", 0), candidate("d", 2)]
    assert Translator.with_terms(row, beam, 1) == [beam[1]]
    assert Translator.with_terms(row, beam, 2) == [beam[1], beam[3]]
    assert Translator.with_terms(row, beam, 3) is None  # decoded again, terms enforced


TBX_BASIC = """<?xml version="1.0" encoding="UTF-8"?>
<martif type="TBX-Basic" xml:lang="en-US"><text><body>
 <termEntry id="1">
  <langSet xml:lang="en-US"><tig><term>Trash</term></tig></langSet>
  <langSet xml:lang="de-DE"><tig><term>Papierkorb</term></tig><tig><term>Müll</term></tig></langSet>
 </termEntry>
 <termEntry id="2"><langSet xml:lang="en"><tig><term>only English</term></tig></langSet></termEntry>
</body></text></martif>"""
TBX_2019 = """<?xml version="1.0"?>
<tbx xmlns="urn:iso:std:iso:30042:ed-2" type="TBX-Basic" style="dca" xml:lang="en"><text><body>
 <conceptEntry id="c1">
  <langSec xml:lang="en"><termSec><term>file manager</term></termSec></langSec>
 </conceptEntry>
 <conceptEntry id="c2">
  <langSet xml:lang="en"><termSec><term>folder</term></termSec></langSet>
  <langSet xml:lang="de"><termSec><term>Ordner</term></termSec></langSet>
 </conceptEntry>
</body></text></tbx>"""
BOMB = """<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><martif><text><body><termEntry>
<langSet xml:lang="en"><tig><term>&lol2;</term></tig></langSet></termEntry>
</body></text></martif>"""


def test_glossary_files_tbx_csv_tsv_and_po(tmp_path: Path) -> None:
    (tmp_path / "a.tbx").write_text(TBX_BASIC, encoding="utf-8")
    assert read_glossary(tmp_path / "a.tbx", "en", "de") == {"Trash": "Papierkorb"}
    (tmp_path / "b.tbx").write_text(TBX_2019, encoding="utf-8")
    assert read_glossary(tmp_path / "b.tbx", "en", "de") == {"folder": "Ordner"}
    # Weblate's CSV export: a header, then the terms
    (tmp_path / "c.csv").write_text('location,source,target,id,fuzzy,context\n'
                                    ',Trash,Papierkorb,,False,\n,"Sort, then filter",'
                                    '"Sortieren, dann filtern",,False,\n,empty,,,,\n',
                                    encoding="utf-8")
    assert read_glossary(tmp_path / "c.csv", "en", "de") == {
        "Trash": "Papierkorb", "Sort, then filter": "Sortieren, dann filtern"}
    (tmp_path / "d.tsv").write_text("Trash\tPapierkorb\nfolder\tOrdner\n", encoding="utf-8")
    assert read_glossary(tmp_path / "d.tsv", "en", "de") == {"Trash": "Papierkorb",
                                                             "folder": "Ordner"}
    po = polib.POFile()
    po.extend([polib.POEntry(msgid="Trash", msgstr="Papierkorb"),
               polib.POEntry(msgid="Bin", msgstr="Tonne", flags=["fuzzy"]),
               polib.POEntry(msgid="Empty", msgstr="")])
    po.save(str(tmp_path / "e.po"))
    assert read_glossary(tmp_path / "e.po", "en", "de") == {"Trash": "Papierkorb"}


def test_xml_entities_are_refused_not_expanded(tmp_path: Path) -> None:
    (tmp_path / "bomb.tbx").write_text(BOMB, encoding="utf-8")
    with pytest.raises(GlossaryError, match="not a readable TBX file"):
        read_glossary(tmp_path / "bomb.tbx", "en", "de")


def test_named_glossaries_by_pair_and_name(tmp_path: Path) -> None:
    (tmp_path / "en-de").mkdir()
    (tmp_path / "en-de" / "default.tsv").write_text("Trash\tPapierkorb\n", encoding="utf-8")
    (tmp_path / "en-de" / "gnome.tbx").write_text(TBX_BASIC, encoding="utf-8")
    (tmp_path / "en-de" / "notes.txt").write_text("not a glossary")
    (tmp_path / "en-fr").mkdir()
    (tmp_path / "en-fr" / "default.tsv").write_text("Trash\tCorbeille\n", encoding="utf-8")
    found = load_glossaries(tmp_path)
    assert sorted(found) == [("en", "de"), ("en", "fr")]
    assert sorted(found["en", "de"]) == ["default", "gnome"]
    assert found["en", "de"]["default"].default and not found["en", "de"]["gnome"].default
    (tmp_path / "en-fr" / "bad.tsv").write_text("Save %s\tEnregistrer %s\n", encoding="utf-8")
    with pytest.raises(GlossaryError, match=r"en-fr/bad\.tsv: .*contains a placeholder"):
        load_glossaries(tmp_path)


def test_a_requests_own_entries_win_over_the_named_glossary() -> None:
    merged = Glossary({"Trash": "Papierkorb", "file": "Datei"}).merged(
        Glossary({"trash": "Abfall"}))
    assert [(t.source, t.target) for t in merged.find("trash file")] == [
        ("trash", "Abfall"), ("file", "Datei")]


def test_a_terms_alignment_is_its_sentinels_not_a_guess(translator: Translator) -> None:
    texts = ["Equal size to all views", "Move the file to the trash"]
    rows = translator.prepare(texts, glossary=Glossary({"Size": "Größe", "trash": "Papierkorb"}))
    for t in translator.translate_prepared(rows, DecodeOptions(beam_size=4, attention=True)
                                           ).translations:
        source, target, weights = translator.attention_of(t)
        links = align(source, target, weights, translator.term_pieces(t))
        term = t.best.terms[0]
        [link] = [link for link in links if link.target_word.strip(",.") == term.target]
        assert link.source_word == term.source


def test_known_links_override_the_attention() -> None:
    source, target = ["▁a", "▁b", "</s>"], ["▁x", "▁y", "</s>"]
    attention = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.0, 0.0, 1.0]])
    assert [link.source_word for link in align(source, target, attention)] == ["a", "a"]
    assert [link.source_word for link in align(source, target, attention, {1: 1})] == ["a", "b"]

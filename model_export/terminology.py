"""Terminology evaluation: does the model use a customer's terms, with and without them?

The test set comes from whole applications held out of training
(``model_export/packages/heldout.txt``): the one- and two-word entries of their catalogs (a
source with a single translation) are the glossary, and every longer string of theirs never
seen in training (``heldout.tsv``) holding such a term whose human translation uses the
term's translation is a test case, as in the WMT 2021 terminology task. Measured, as served
(beam 4):

- term use: the share of (string, term) occurrences whose output holds the target term (whole
  words, any case), without and with the glossary;
- chrF and BLEU against the human translations, without and with it; placeholders kept;
- alignment: the share of term occurrences whose target words are aligned (from attention)
  to the source term's words only;
- speed: beam 4 with a 20-term glossary per string against none, side by side, median ratio.

Both ways of honouring a glossary are measured side by side: masking the terms like
placeholders ("mask") and lexically constrained beam search ("constrain", dynamic beam
allocation; :mod:`service.decoding.lexical`), each on every string and model first (the
best of the beam's own candidates that holds every term, the method where none does:
"first-mask", "first-constrain").
"""

from __future__ import annotations

import logging
import re
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from model_export.corpus import (
    PACKAGE_LISTS,
    Pair,
    clean,
    deb_catalogs,
    download_debs,
    load_split,
    read_packages,
)
from model_export.metrics import score
from service.alignment import align
from service.glossary import Glossary
from service.placeholders import PLACEHOLDER_RE
from service.translator import GLOSSARY_METHODS, DecodeOptions, Prepared, Translation, Translator

log = logging.getLogger(__name__)

GLOSSARY_TERMS = 20  # per string in the speed test (the budget: <= 1.3x)
# name -> (method, model first, fallback beam): SERVICE_GLOSSARY_METHOD,
# SERVICE_GLOSSARY_MODEL_FIRST and SERVICE_GLOSSARY_FALLBACK_BEAM (None: the request's beam)
FALLBACK_BEAM = DecodeOptions().fallback_beam
CONFIGURATIONS: dict[str, tuple[str, bool, int | None]] = {
    **{method if not first else f"first-{method}": (method, first, FALLBACK_BEAM)
       for first in (False, True) for method in GLOSSARY_METHODS},
    "first-mask-wide": ("mask", True, None)}
_WORD = re.compile(r"[^\W\d_]+(?:[-'][^\W\d_]+)*")
_SENTENCE_START = ".!?:…\"«“„(["  # what may come right before a sentence's first word


@dataclass(frozen=True)
class Case:
    source: str
    reference: str
    terms: dict[str, str]  # the glossary entries the string holds (and its reference uses)


def has_term(text: str, term: str) -> bool:
    """``term`` occurs in ``text`` as whole words, any case."""
    words = r"\s+".join(map(re.escape, term.split()))
    return re.search(rf"(?<!\w){words}(?!\w)", text, re.IGNORECASE) is not None


def glossary_entries(pairs: Sequence[Pair]) -> dict[str, str]:
    """One- and two-word strings (letters only) with one translation of one to three words:
    the applications' own glossary."""
    seen: dict[str, set[str]] = {}
    first: dict[str, tuple[str, str]] = {}
    for source, target in pairs:
        words = source.split()
        if not 1 <= len(words) <= 2 or not all(_WORD.fullmatch(w) for w in words):
            continue
        if not 1 <= len(target.split()) <= 3 or PLACEHOLDER_RE.search(target):
            continue
        key = source.casefold()
        seen.setdefault(key, set()).add(target.casefold())
        first.setdefault(key, (source, target))
    return {first[k][0]: first[k][1] for k, targets in seen.items() if len(targets) == 1}


def usual_case(entries: dict[str, str], pairs: Sequence[Pair]) -> dict[str, str]:
    """Each entry's target as the catalogs write it inside a sentence, where they do.

    The entries are labels, capitalized as labels are ("Fenêtre", "Quitter"); a
    terminologist's glossary writes a term as it stands in running text ("fenêtre", but
    German "Datei"), and the service keeps a term's case except a sentence-initial capital.
    The most common form after a word that does not end a sentence wins; a term never seen
    inside a sentence keeps its label's form."""
    wanted = {target.casefold(): target for target in entries.values()}
    longest = max((len(t.split()) for t in wanted), default=0)
    seen: dict[str, Counter[str]] = {}
    for _, target in pairs:
        found = list(_WORD.finditer(target))
        for i, first in enumerate(found):
            before = target[:first.start()].rstrip()
            if not any(c.isalpha() for c in before) or before[-1] in _SENTENCE_START:
                continue
            for n in range(1, longest + 1):
                if i + n > len(found):
                    break
                surface = target[first.start():found[i + n - 1].end()]
                if surface.casefold() in wanted and " ".join(surface.split()) == surface:
                    seen.setdefault(surface.casefold(), Counter())[surface] += 1
    return {source: seen[target.casefold()].most_common(1)[0][0]
            if target.casefold() in seen else target for source, target in entries.items()}


def terminology_cases(pairs: Sequence[Pair], entries: dict[str, str]) -> list[Case]:
    glossary = Glossary(entries, max(len(entries), 1))
    cases = []
    for source, reference in pairs:
        if len(source.split()) < 3:
            continue
        terms = {t.source: t.target for t in glossary.find(source)
                 if has_term(reference, t.target)}
        if terms:
            cases.append(Case(source, reference, terms))
    return cases


def term_use(cases: Sequence[Case], outputs: Sequence[str]) -> tuple[int, int]:
    """(occurrences whose output holds the target term, occurrences)."""
    used = total = 0
    for case, output in zip(cases, outputs, strict=True):
        for target in case.terms.values():
            total += 1
            used += has_term(output, target)
    return used, total


def aligned_terms(translator: Translator, cases: Sequence[Case],
                  translations: Sequence[Translation]) -> tuple[int, int]:
    """(term occurrences whose target words align to the source term's words only, term
    occurrences found in the output)."""
    right = total = 0
    for case, t in zip(cases, translations, strict=True):
        source_pieces, target_pieces, weights = translator.attention_of(t)
        links = align(source_pieces, target_pieces, weights, translator.term_pieces(t))
        for source_term, target_term in case.terms.items():
            target_words, source_words = words(target_term), words(source_term)
            aligned = [w for link in links if words(link.target_word) & target_words
                       for w in words(link.source_word)]
            if not aligned:
                continue
            total += 1
            right += all(w in source_words for w in aligned)
    return right, total


def words(text: str) -> set[str]:
    """Its words, lower-cased, without punctuation (a masked term is one piece of several
    words; a word may carry a comma)."""
    return {w.casefold() for w in _WORD.findall(text)}


def heldout_catalogs(lang: str, cache: Path) -> list[Pair]:
    """Every entry of the held-out applications' ``lang`` catalogs, cleaned."""
    packages = read_packages(PACKAGE_LISTS / "heldout.txt", lang)
    debs = download_debs(packages, cache)
    return clean(pair for p in packages if p in debs for pair in deb_catalogs(debs[p], lang))


def evaluate(bundle: Path, data_dir: Path, beam_size: int = 4, rounds: int = 3,
             cache: Path = Path("work/debs")) -> dict[str, Any]:
    pairs = load_split(data_dir / "heldout.tsv")
    translator = Translator(bundle)
    catalogs = heldout_catalogs(translator.manifest.target_lang, cache)
    entries = usual_case(glossary_entries(catalogs), catalogs)
    cases = terminology_cases(pairs, entries)
    # as served (no attention); the quality decodes add attention for the alignment check
    served = {"none": DecodeOptions(beam_size=beam_size), **{
        name: DecodeOptions(beam_size=beam_size, fallback_beam=fallback)
        for name, (_, _, fallback) in CONFIGURATIONS.items()}}
    sources = [c.source for c in cases]
    references = [c.reference for c in cases]

    def prepared_with(glossaries: Sequence[Glossary]) -> dict[str, list[Prepared]]:
        return {name: [translator.prepare([c.source], glossary=g, method=method,
                                          model_first=first)[0]
                       for c, g in zip(cases, glossaries, strict=True)]
                for name, (method, first, _) in CONFIGURATIONS.items()}

    plain_rows = translator.prepare(sources)
    glossed_rows = prepared_with([Glossary(c.terms) for c in cases])
    # 20 terms a string for the speed test: its own, then others of the glossary
    others = sorted(entries.items())
    twenty_terms = []
    for i, case in enumerate(cases):
        twenty = dict(case.terms)
        for source, target in others[i % len(others):] + others:
            if len(twenty) >= GLOSSARY_TERMS:
                break
            if source.casefold() not in {s.casefold() for s in twenty}:
                twenty[source] = target
        twenty_terms.append(Glossary(twenty))
    speed_rows = {"none": plain_rows, **prepared_with(twenty_terms)}

    plain = translator.translate_prepared(
        plain_rows, replace(served["none"], attention=True)).translations
    decoded = {name: translator.translate_prepared(rows, replace(served[name], attention=True))
               for name, rows in glossed_rows.items()}
    glossed = {name: d.translations for name, d in decoded.items()}
    timings: dict[str, list[float]] = {name: [] for name in speed_rows}
    for _ in range(rounds):  # interleaved
        for name, rows in speed_rows.items():
            started = time.perf_counter()
            translator.translate_running(rows, served[name])
            timings[name].append(time.perf_counter() - started)

    def report(translations: Sequence[Translation], redone: int = 0) -> dict[str, Any]:
        outputs = [t.best.text for t in translations]
        used, total = term_use(cases, outputs)
        right, found = aligned_terms(translator, cases, translations)
        unchanged = sum(o == p.best.text for o, p in zip(outputs, plain, strict=True))
        return {"term_use": round(used / total, 4), "term_occurrences": total,
                "unchanged": round(unchanged / len(outputs), 4),
                "decoded_again": round(redone / len(outputs), 4),
                "alignment_right": round(right / found, 4) if found else None,
                "aligned_occurrences": found,
                **score(sources, outputs, references).as_dict()}

    none = statistics.median(timings["none"])
    result = {"bundle": str(bundle), "glossary_entries": len(entries), "strings": len(cases),
              "fallback_beam": FALLBACK_BEAM,
              "without": report(plain),
              "with": {name: report(d.translations, d.stats.redone)
                       for name, d in decoded.items()},
              "seconds": {k: [round(v, 3) for v in vs] for k, vs in timings.items()},
              "speed_ratio_20_terms": {name: round(statistics.median(timings[name]) / none, 3)
                                       for name in CONFIGURATIONS},
              "examples": [{"source": c.source, "reference": c.reference, "terms": c.terms,
                            "without": plain[i].best.text,
                            **{name: glossed[name][i].best.text for name in CONFIGURATIONS}}
                           for i, c in list(enumerate(cases))[:: max(1, len(cases) // 12)][:12]]}
    log.info("terminology: %s", {k: result[k] for k in ("strings", "without", "with",
                                                         "speed_ratio_20_terms")})
    return result

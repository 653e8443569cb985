"""Glossaries: a customer's terms, found in the source text.

A glossary maps source terms to target terms ("Trash" -> "Papierkorb"). In a text, a term
matches as whole words, case-insensitively, with any run of spaces between the words of a
multi-word term; scanning left to right, the longest term that matches at a position wins
("file manager" over "file"). Text inside a
placeholder (``%s``, ``<b>``, ``$(ARG1)``...) never matches. The matched spans are masked like
placeholders (:func:`service.placeholders.mask`), so the search has to emit each term exactly
as often as the source has it, and the target term takes its place in the output.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polib
from defusedxml import DefusedXmlException, ElementTree

from service.placeholders import PLACEHOLDER_RE, TermSpan

MAX_ENTRIES = 256  # in a request's own glossary
MAX_TERM_CHARS = 100
NAME_RE = re.compile(r"[A-Za-z0-9._-]+")


class GlossaryError(ValueError):
    """A glossary entry that cannot be used; the message names it."""


class Glossary:
    """Validated source -> target terms, and the expression that finds them.

    The expression is a trie of the terms (one branch per shared prefix), so a text is
    scanned once whatever the number of terms (a 20,000-term glossary finds its terms in a
    sentence as fast as a 20-term one). Several glossaries merged share their compiled
    expressions: a request's own entries on top of a named glossary cost no recompilation.
    """

    def __init__(self, entries: Mapping[str, str], max_entries: int = MAX_ENTRIES) -> None:
        if len(entries) > max_entries:
            raise GlossaryError(f"the glossary has {len(entries)} entries; the limit is "
                                f"{max_entries}")
        terms: dict[str, tuple[str, str]] = {}  # by the source term, lower-cased
        for source, target in entries.items():
            for side, term in (("source", source), ("target", target)):
                if not term.strip():
                    raise GlossaryError(f"glossary entry {source!r}: the {side} term is empty")
                if len(term) > MAX_TERM_CHARS:
                    raise GlossaryError(f"glossary entry {source!r}: the {side} term has "
                                        f"{len(term)} characters; the limit is {MAX_TERM_CHARS}")
                if PLACEHOLDER_RE.search(term):
                    raise GlossaryError(f"glossary entry {source!r}: the {side} term contains "
                                        "a placeholder")
            key = _key(source)
            if key in terms and terms[key][1] != target:
                raise GlossaryError(f"glossary entries {terms[key][0]!r} and {source!r} are "
                                    "the same term with different translations")
            terms[key] = (source, " ".join(target.split()))
        self._layers = [_Layer(terms)] if terms else []

    @property
    def terms(self) -> dict[str, tuple[str, str]]:
        """(source, target) by the lower-cased source term; a later layer wins."""
        return {k: v for layer in self._layers for k, v in layer.terms.items()}

    def __len__(self) -> int:
        return len(self.terms)

    def merged(self, other: Glossary | None) -> Glossary:
        """This glossary with ``other``'s entries added, ``other`` winning a shared term
        (and a tie between overlapping terms of the same length)."""
        if other is None:
            return self
        union = Glossary({})
        union._layers = self._layers + other._layers
        return union

    def find(self, text: str) -> list[TermSpan]:
        """The terms in ``text``, left to right, none inside a placeholder: at each position
        the longest term that starts there, then on after it."""
        if not self._layers:
            return []
        blocked = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
        longest: dict[int, tuple[int, _Layer]] = {}  # start -> (end, the layer's term)
        for layer in self._layers:  # a later layer wins a tie
            for start, end in layer.starts(text):
                if end >= longest.get(start, (start, layer))[0]:
                    longest[start] = (end, layer)
        found, at = [], 0
        for start in sorted(longest):
            end, layer = longest[start]
            if start < at or any(b < end and start < e for b, e in blocked):
                continue
            source, target = layer.terms[_key(text[start:end])]
            found.append(TermSpan(start, end, source, target))
            at = end
        return found


def _key(term: str) -> str:
    return " ".join(term.split()).casefold()


class _Layer:
    """One glossary's terms and their trie expression."""

    def __init__(self, terms: dict[str, tuple[str, str]]) -> None:
        self.terms = terms
        trie: dict[str, Any] = {}
        for source, _ in terms.values():
            node = trie
            for char in " ".join(source.split()).lower():  # matched ignoring case
                node = node.setdefault(char, {})
            node[""] = {}  # a term ends here
        # Every position where a term starts (a lookahead, so overlapping starts are all
        # seen), with the longest term that starts there and ends at a word boundary.
        self._pattern = re.compile(rf"(?<!\w)(?=({_branches(trie)})(?!\w))", re.IGNORECASE)

    def starts(self, text: str) -> list[tuple[int, int]]:
        return [m.span(1) for m in self._pattern.finditer(text)]


def _branches(node: dict[str, Any]) -> str:
    """The regular expression of a trie node: its children's branches, the longer first
    (an optional tail where a term ends here, greedy: the longest term wins); a space
    matches any run of whitespace."""
    parts = [(r"\s+" if char == " " else re.escape(char)) + _branches(child)
             for char, child in sorted(node.items()) if char]
    if not parts:
        return ""
    body = parts[0] if len(parts) == 1 else f"(?:{'|'.join(parts)})"
    return f"(?:{body})?" if "" in node else body


# Named glossaries: files in SERVICE_GLOSSARY_DIR, by language pair.

NAMED_MAX_ENTRIES = 20_000  # a named glossary may be a whole terminology base
DEFAULT_NAME = "default"  # <dir>/<source>-<target>/default.*: applied to every request
FORMATS = (".tbx", ".csv", ".tsv", ".po")
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def read_glossary(path: Path, source_lang: str, target_lang: str) -> dict[str, str]:
    """Source -> target terms of a glossary file: TBX (TBX-Basic's ``termEntry`` or TBX
    2019's ``conceptEntry``, parsed with defusedxml), CSV or TSV as Weblate exports them
    (a header naming ``source`` and ``target``, else the first two columns), or a .po
    catalog (translated, non-fuzzy entries). An entry without both languages is skipped."""
    suffix = path.suffix.lower()
    if suffix == ".tbx":
        return _read_tbx(path, source_lang, target_lang)
    if suffix in (".csv", ".tsv"):
        return _read_table(path, "\t" if suffix == ".tsv" else ",")
    if suffix == ".po":
        catalog = polib.pofile(str(path))
        return {e.msgid: e.msgstr for e in catalog
                if e.msgstr and not e.obsolete and "fuzzy" not in e.flags}
    raise GlossaryError(f"{path.name}: not a glossary format ({', '.join(FORMATS)})")


def _read_tbx(path: Path, source_lang: str, target_lang: str) -> dict[str, str]:
    def base(lang: str) -> str:
        return lang.lower().replace("_", "-").split("-")[0]

    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, DefusedXmlException) as exc:
        raise GlossaryError(f"{path.name}: not a readable TBX file: {exc}") from exc
    if root is None:
        raise GlossaryError(f"{path.name}: an empty TBX file")
    entries: dict[str, str] = {}
    for concept in root.iter():
        if _local(concept.tag) not in ("termEntry", "conceptEntry"):
            continue
        terms: dict[str, str] = {}
        for lang_set in concept:
            if _local(lang_set.tag) != "langSet":
                continue
            lang = base(lang_set.get(_XML_LANG) or lang_set.get("lang") or "")
            term = next((t.text for t in lang_set.iter() if _local(t.tag) == "term" and t.text),
                        None)
            if term and lang not in terms:
                terms[lang] = term.strip()
        source, target = terms.get(base(source_lang)), terms.get(base(target_lang))
        if source and target:
            entries.setdefault(source, target)
    return entries


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _read_table(path: Path, delimiter: str) -> dict[str, str]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.reader(f, delimiter=delimiter))
    if not rows:
        return {}
    header = [cell.strip().lower() for cell in rows[0]]
    if "source" in header and "target" in header:
        s, t = header.index("source"), header.index("target")
        rows = rows[1:]
    else:
        s, t = 0, 1
    return {row[s].strip(): row[t].strip() for row in rows
            if len(row) > max(s, t) and row[s].strip() and row[t].strip()}


@dataclass(frozen=True)
class NamedGlossary:
    id: str
    source: str
    target: str
    path: Path
    glossary: Glossary

    @property
    def default(self) -> bool:
        return self.id == DEFAULT_NAME


def load_glossaries(directory: Path) -> dict[tuple[str, str], dict[str, NamedGlossary]]:
    """Every glossary under ``directory``: ``<source>-<target>/<name>.<format>``, by pair and
    name. A file that cannot be read or used raises :class:`GlossaryError` naming it."""
    found: dict[tuple[str, str], dict[str, NamedGlossary]] = {}
    if not directory.is_dir():
        raise GlossaryError(f"glossary directory {directory} is not a directory")
    for pair_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        source, _, target = pair_dir.name.partition("-")
        if not (source and target):
            continue
        for path in sorted(pair_dir.iterdir()):
            if path.suffix.lower() not in FORMATS or not NAME_RE.fullmatch(path.stem):
                continue
            try:
                entries = read_glossary(path, source, target)
                glossary = Glossary(entries, NAMED_MAX_ENTRIES)
            except (GlossaryError, OSError, ValueError) as exc:
                raise GlossaryError(f"glossary {pair_dir.name}/{path.name}: {exc}") from exc
            if path.stem in found.get((source, target), {}):
                raise GlossaryError(f"glossary {pair_dir.name}/{path.stem} exists in two "
                                    "formats")
            found.setdefault((source, target), {})[path.stem] = NamedGlossary(
                path.stem, source, target, path, glossary)
    return found

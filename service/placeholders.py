"""Placeholder masking shared by training and serving (part of the bundle contract).

UI strings carry placeholders (``%s``, ``%1``, ``$(ARG1)``, ``{name}``, ``<b>``, newlines...)
that must come back verbatim. A small model mangles them, so they are replaced by sentinel
tokens ``<ph0>``, ``<ph1>``... before tokenization and put back after decoding. Identical
placeholders share one sentinel; the target side of a training pair reuses the source's
sentinels so the model learns to copy them.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

MAX_SENTINELS = 16
SENTINELS = tuple(f"<ph{i}>" for i in range(MAX_SENTINELS))

_TAGS = "a|b|i|u|s|p|br|hr|em|strong|span|div|big|small|sub|sup|tt|font|li|ul|ol|code|pre|img"
# Order matters: the first alternative that matches at a position wins.
PLACEHOLDER_RE = re.compile(
    "|".join(
        [
            rf"</?(?i:{_TAGS})(?:\s+[^<>]*)?\s*/?>",  # markup: <b>, </a>, <br/>, <BR>
            r"\$\([A-Za-z0-9_.]+\)",  # $(ARG1)
            r"\$\{[^{}\s]+\}",  # ${name}
            r"\$[A-Za-z0-9_]+\$",  # $NAME$
            r"\{[A-Za-z0-9_]*\}",  # {name}, {0}, {}
            r"%[A-Z][A-Z0-9_]*(?:%|\b)",  # %PRODUCTNAME, %PAGE%
            r"%[-+#0]*\d*(?:\.\d+)?[sdiuxXfFeEgGcp]",  # printf: %s, %d, %.2f
            r"%\d+",  # %1
            r"#\d+\b",  # #1
            r"&(?:[a-z]+|#\d+);",  # &amp;, &#160;
            r"\\[ntr]",  # escaped newline/tab as two characters
            r"[\n\t]",  # real newline/tab
        ]
    )
)
_SENTINEL_RE = re.compile(r"<ph(\d+)>")


def find_placeholders(text: str) -> list[str]:
    """All placeholders in ``text``, in order of appearance."""
    return [m.group(0) for m in PLACEHOLDER_RE.finditer(text)]


@dataclass(frozen=True)
class Masked:
    """A text with placeholders replaced by sentinels, and how to undo it."""

    text: str
    placeholders: tuple[str, ...]  # placeholders[i] is what <ph{i}> stands for
    # Glossary terms masked too: (sentinel index, source term, span in the original text)
    terms: tuple[tuple[int, str, tuple[int, int]], ...] = ()


@dataclass(frozen=True)
class TermSpan:
    """A glossary term found in a text (:meth:`service.glossary.Glossary.find`): characters
    ``start:end`` of it."""

    start: int
    end: int
    source: str  # the glossary's source term
    target: str  # what the output must say


def mask(text: str, terms: Sequence[TermSpan] = ()) -> Masked:
    """Replace placeholders by ``<phN>``; identical placeholders share a sentinel.

    ``terms`` (glossary terms found in ``text``, outside placeholders) are masked the same
    way, their sentinel standing for the target term. Beyond ``MAX_SENTINELS`` distinct
    placeholders and terms the rest stay as plain text.
    """
    spans = sorted([(m.start(), m.end(), m.group(0), None) for m in PLACEHOLDER_RE.finditer(text)]
                   + [(t.start, t.end, t.target, t) for t in terms], key=lambda s: s[0])
    table: list[tuple[str, bool]] = []  # (what the sentinel stands for, is a term)
    parts, masked_terms, at = [], [], 0
    for start, end, replacement, term in spans:
        key = (replacement, term is not None)
        if key not in table and len(table) < MAX_SENTINELS:
            table.append(key)
        parts.append(text[at:start])
        if key in table:
            parts.append(SENTINELS[table.index(key)])
            if term is not None:
                masked_terms.append((table.index(key), term.source, (start, end)))
        else:
            parts.append(text[start:end])
        at = end
    parts.append(text[at:])
    return Masked("".join(parts), tuple(r for r, _ in table), tuple(masked_terms))


def mask_with(text: str, placeholders: tuple[str, ...]) -> str:
    """Mask ``text`` with an existing table (the target side of a training pair).

    Placeholders absent from the table stay as plain text.
    """

    def substitute(match: re.Match[str]) -> str:
        ph = match.group(0)
        return SENTINELS[placeholders.index(ph)] if ph in placeholders else ph

    return PLACEHOLDER_RE.sub(substitute, text)


def unmask(text: str, placeholders: tuple[str, ...]) -> str:
    """Put placeholders back; a sentinel with no entry in the table is dropped."""

    def substitute(match: re.Match[str]) -> str:
        i = int(match.group(1))
        return placeholders[i] if i < len(placeholders) else ""

    return _SENTINEL_RE.sub(substitute, text)


@dataclass(frozen=True)
class AppliedTerm:
    """A glossary term as it came out: where the source had it and where the output has it."""

    source: str  # the glossary's source term
    target: str  # as written in the output
    source_span: tuple[int, int]  # characters of the source text
    target_span: tuple[int, int]  # characters of the output text


def as_placed(term: str, before: str) -> str:
    """A glossary's target term as it goes into a translation after ``before``: as the
    glossary writes it, with a capital first letter where it starts the translation."""
    return term[:1].upper() + term[1:] if not before.strip() else term


def unmask_terms(text: str, masked: Masked) -> tuple[str, list[AppliedTerm]]:
    """:func:`unmask`, also saying where each glossary term went. A term that starts the
    output gets a capital first letter (the target term's case otherwise), and a space where
    the model put it against a word or number (as it may an owed term it appends last)."""
    terms: dict[int, list[tuple[str, tuple[int, int]]]] = {}
    for index, source, span in masked.terms:
        terms.setdefault(index, []).append((source, span))
    parts: list[str] = []
    applied: list[AppliedTerm] = []
    length, at = 0, 0
    for match in _SENTINEL_RE.finditer(text):
        parts.append(text[at:match.start()])
        length += match.start() - at
        at = match.end()
        i = int(match.group(1))
        value = masked.placeholders[i] if i < len(masked.placeholders) else ""
        if terms.get(i):
            before = "".join(parts)
            value = as_placed(value, before)
            source, span = terms[i].pop(0)
            # a term is whole words: never glued to a word or number next to it
            lead = " " if before[-1:].isalnum() else ""
            trail = " " if text[at:at + 1].isalnum() else ""
            start = length + len(lead)
            applied.append(AppliedTerm(source, value, span, (start, start + len(value))))
            value = lead + value + trail
        parts.append(value)
        length += len(value)
    parts.append(text[at:])
    return "".join(parts), applied


def keeps_placeholders(source: str, output: str) -> bool:
    """True when ``output`` holds every placeholder of ``source`` as often as it does."""
    needed = Counter(find_placeholders(source))
    have = Counter(find_placeholders(output))
    return all(have[ph] >= n for ph, n in needed.items())

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

import re
from collections.abc import Mapping

from service.placeholders import PLACEHOLDER_RE, TermSpan

MAX_ENTRIES = 256
MAX_TERM_CHARS = 100


class GlossaryError(ValueError):
    """A glossary entry that cannot be used; the message names it."""


class Glossary:
    """Validated source -> target terms, and the expression that finds them."""

    def __init__(self, entries: Mapping[str, str]) -> None:
        if len(entries) > MAX_ENTRIES:
            raise GlossaryError(f"the glossary has {len(entries)} entries; the limit is "
                                f"{MAX_ENTRIES}")
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
            key = " ".join(source.split()).casefold()
            if key in terms and terms[key][1] != target:
                raise GlossaryError(f"glossary entries {terms[key][0]!r} and {source!r} are "
                                    "the same term with different translations")
            terms[key] = (source, " ".join(target.split()))
        self.terms = terms
        # Longest first: at one position the regex takes the first alternative that matches.
        words = sorted(terms, key=len, reverse=True)
        alternatives = [r"\s+".join(map(re.escape, term.split())) for term in words]
        self._pattern = re.compile(rf"(?<!\w)(?:{'|'.join(alternatives)})(?!\w)",
                                   re.IGNORECASE) if words else None

    def __len__(self) -> int:
        return len(self.terms)

    def find(self, text: str) -> list[TermSpan]:
        """The terms in ``text``, left to right, none inside a placeholder."""
        if self._pattern is None:
            return []
        blocked = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
        found = []
        for m in self._pattern.finditer(text):
            if any(start < m.end() and m.start() < end for start, end in blocked):
                continue
            source, target = self.terms[" ".join(m.group(0).split()).casefold()]
            found.append(TermSpan(m.start(), m.end(), source, target))
        return found

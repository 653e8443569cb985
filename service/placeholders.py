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


def mask(text: str) -> Masked:
    """Replace placeholders by ``<phN>``; identical placeholders share a sentinel.

    Beyond ``MAX_SENTINELS`` distinct placeholders the rest stay as plain text.
    """
    table: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        ph = match.group(0)
        if ph in table:
            return SENTINELS[table.index(ph)]
        if len(table) == MAX_SENTINELS:
            return ph
        table.append(ph)
        return SENTINELS[len(table) - 1]

    return Masked(text=PLACEHOLDER_RE.sub(substitute, text), placeholders=tuple(table))


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


def keeps_placeholders(source: str, output: str) -> bool:
    """True when ``output`` holds every placeholder of ``source`` as often as it does."""
    needed = Counter(find_placeholders(source))
    have = Counter(find_placeholders(output))
    return all(have[ph] >= n for ph, n in needed.items())

"""Spans kept verbatim through translation on the LibreTranslate surface.

HTML markup (``format=html``) and Weblate's ``[X12X]`` markers (its stand-ins for the
placeholders of a string) are replaced by ``{LT0}``, ``{LT1}``... tokens before translation.
:mod:`service.placeholders` masks those like any ``{name}`` placeholder, so the search keeps
each exactly as often as the source has it, and :func:`restore` puts the spans back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from service.placeholders import MAX_SENTINELS, find_placeholders

# Whole elements whose content is not text to translate, then any tag, comment or doctype,
# then character references.
HTML_RE = re.compile(
    r"<(script|style)\b[^>]*>.*?</\1\s*>"
    r"|<!--.*?-->"
    r"|<[!/?]?[A-Za-z][^<>]*>"
    r"|&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#[xX][0-9A-Fa-f]+);",
    re.DOTALL | re.IGNORECASE,
)
WEBLATE_RE = re.compile(r"\[X\d+X\]")


@dataclass(frozen=True)
class Protected:
    """A text with kept spans replaced by tokens, and how to undo it."""

    text: str
    spans: tuple[str, ...]  # spans[i] is what token i stands for
    prefix: str  # tokens are {<prefix><i>}

    def token(self, i: int) -> str:
        return f"{{{self.prefix}{i}}}"


class TooManySpans(ValueError):
    """More distinct spans than the model has placeholder sentinels."""


def protect(text: str, html: bool) -> Protected:
    """Replace markup (if ``html``) and Weblate markers by tokens; identical spans share one.

    Raises :class:`TooManySpans` when there are tokens and, with the text's own
    placeholders, more than :data:`~service.placeholders.MAX_SENTINELS` distinct ones: some
    would reach the model as plain text and could be changed.
    """
    prefix = "LT"
    while "{" + prefix in text:  # never mistake the text's own braces for a token
        prefix += "X"
    pattern = re.compile(f"{HTML_RE.pattern}|{WEBLATE_RE.pattern}", HTML_RE.flags) if html \
        else WEBLATE_RE
    spans: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        span = match.group(0)
        if span not in spans:
            spans.append(span)
        return f"{{{prefix}{spans.index(span)}}}"

    protected = Protected(pattern.sub(substitute, text), tuple(spans), prefix)
    if spans and len(set(find_placeholders(protected.text))) > MAX_SENTINELS:
        raise TooManySpans(f"more than {MAX_SENTINELS} distinct tags or placeholders; at "
                           f"most {MAX_SENTINELS} can be kept through translation")
    return protected


def restore(text: str, protected: Protected) -> str:
    """Put the kept spans back into a translation of ``protected.text``."""
    tokens = re.compile(r"\{" + re.escape(protected.prefix) + r"(\d+)\}")
    return tokens.sub(lambda m: protected.spans[int(m.group(1))]
                      if int(m.group(1)) < len(protected.spans) else m.group(0), text)

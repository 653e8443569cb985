"""What the client does to a catalog string around the server's own placeholder masking.

The service masks placeholders (``service/placeholders.py``), so ``%s``, ``{name}``, ``<b>``
come back verbatim. It cannot know a catalog's conventions: the accelerator marker (GTK
``_``, Qt ``&``, LibreOffice ``~``), that a multi-line string is translated line by line, and
that a line's surrounding whitespace and trailing colon or ellipsis are layout, not text. A
few printf forms it does not mask (``%1$s``, ``%(name)s``, ``%ld``, ``%%``) travel as
stand-ins it does mask (``{_0}``), so the model sees a sentinel as for any placeholder.

    prepared = prepare("_Save as %(name)s:\\n", "_")    # lines to send: ["Save as {_0}"]
    assemble(prepared, ["Speichern unter {_0}"])        # "_Speichern unter %(name)s:\\n"
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from service.placeholders import PLACEHOLDER_RE, find_placeholders

MARKERS = ("_", "&", "~")
# printf (C, with positions and length modifiers) and Python's %(name)s and {name!r:>8}; only
# the matches the server's PLACEHOLDER_RE does not already cover exactly get a stand-in.
CLIENT_PLACEHOLDER_RE = re.compile(
    r"%\([A-Za-z0-9_.]+\)[-+ #0]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]"
    r"|%(?:\d+\$)?[-+ #0']*(?:\d+|\*)?(?:\.(?:\d+|\*))?(?:hh|h|ll|l|L|q|j|z|Z|t|I64|I32)?"
    r"[diouxXeEfFgGaAcspn]"
    r"|%%"
    r"|\{[A-Za-z0-9_.]*(?:![rsa])?(?::[^{}]*)?\}"
)
# A line's trailing layout: whitespace, then a colon or an ellipsis, then whitespace.
_TAIL_RE = re.compile(r"\s*(?:[:：]|…|\.\.\.)?\s*$")


@dataclass(frozen=True)
class Accelerator:
    marker: str  # "_", "&" or "~"
    letter: str  # the character the marker stood before in the source
    line: int  # which line of the source it was on


@dataclass(frozen=True)
class Line:
    """One source line: ``lead + core + tail``; only ``text`` (the core with stand-ins for
    the placeholders the server does not mask) is translated."""

    lead: str
    tail: str
    text: str
    stand_ins: tuple[tuple[str, str], ...]  # (stand-in, original placeholder)


@dataclass(frozen=True)
class Prepared:
    lines: tuple[Line, ...]
    accelerator: Accelerator | None

    @property
    def texts(self) -> list[str]:
        """What to send to the service (lines with nothing to translate left out)."""
        return [line.text for line in self.lines if line.text]


def protected_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of every placeholder, the server's and the client's."""
    spans = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
    spans += [m.span() for m in CLIENT_PLACEHOLDER_RE.finditer(text)]
    return spans


def all_placeholders(text: str) -> Counter[str]:
    """Every placeholder the translation must keep, with its count."""
    client = [m.group(0) for m in CLIENT_PLACEHOLDER_RE.finditer(text)]
    server = find_placeholders(text)
    # a client match that the server also found whole would be counted twice
    return Counter(server) + Counter(ph for ph in client if ph not in server)


def _inside(i: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(start <= i < end for start, end in spans)


def marker_positions(text: str, marker: str) -> list[int]:
    """Indexes of ``marker`` used as an accelerator: before a letter or digit, not doubled
    (``__``, ``&&`` are literal), not inside a placeholder (``%(file_name)s``, ``&amp;``) and
    not in an all-capitals identifier (``LC_ALL``)."""
    spans = protected_spans(text)
    found = []
    for m in re.finditer(re.escape(marker) + r"(?=[^\W_])", text):
        i = m.start()
        if (i > 0 and text[i - 1] == marker) or _inside(i, spans):
            continue
        word = re.search(r"[\w" + re.escape(marker) + r"]*$", text[:i])
        after = re.match(r"\w*", text[i + 1:])
        whole = (word.group(0) if word else "") + (after.group(0) if after else "")
        if word and word.group(0) and whole.isupper():  # LC_ALL, R&D
            continue
        found.append(i)
    return found


def detect_marker(texts: Iterable[str]) -> str | None:
    """The catalog's accelerator marker: the one that most strings carry exactly once."""
    counts = Counter(marker for text in texts for marker in MARKERS
                     if len(marker_positions(text, marker)) == 1)
    return counts.most_common(1)[0][0] if counts else None


def strip_accelerator(text: str, marker: str | None) -> tuple[str, Accelerator | None]:
    """``text`` without its accelerator marker, and where it was (None when the text has
    none, or several, which is ambiguous)."""
    if marker is None:
        return text, None
    positions = marker_positions(text, marker)
    if len(positions) != 1:
        return text, None
    [i] = positions
    return text[:i] + text[i + 1:], Accelerator(marker, text[i + 1], text.count("\n", 0, i))


def place_accelerator(text: str, marker: str, letter: str) -> str:
    """Put ``marker`` before ``letter`` in ``text`` (case-insensitive, a word start first),
    else before the first letter or digit; never inside a placeholder."""
    spans = protected_spans(text)
    usable = [i for i, c in enumerate(text) if c.isalnum() and not _inside(i, spans)]
    if not usable:
        return text
    same = [i for i in usable if text[i].casefold() == letter.casefold()]
    starts = [i for i in same if i == 0 or not text[i - 1].isalnum()]
    i = (starts or same or usable)[0]
    return text[:i] + marker + text[i:]


def split_line(line: str) -> Line:
    """Leading whitespace, the core (placeholders the server misses replaced by stand-ins)
    and the trailing whitespace, colon or ellipsis."""
    core = line.lstrip()
    lead = line[:len(line) - len(core)]
    tail_match = _TAIL_RE.search(core)
    tail = tail_match.group(0) if tail_match else ""
    core = core[:len(core) - len(tail)]
    if not any(c.isalnum() for c in core):  # nothing for the model: keep the line as it is
        return Line(lead + core + tail, "", "", ())
    server = [m.span() for m in PLACEHOLDER_RE.finditer(core)]
    table: dict[str, str] = {}
    prefix = _free_prefix(core)

    def stand_in(m: re.Match[str]) -> str:
        if m.span() in server:
            return m.group(0)
        return table.setdefault(m.group(0), f"{{{prefix}{len(table)}}}")

    text = CLIENT_PLACEHOLDER_RE.sub(stand_in, core)
    return Line(lead, tail, text, tuple((s, ph) for ph, s in table.items()))


def _free_prefix(text: str) -> str:
    """A stand-in prefix (``_``, ``__``, ...) that the text does not already use."""
    prefix = "_"
    while "{" + prefix in text:
        prefix += "_"
    return prefix


def prepare(text: str, marker: str | None) -> Prepared:
    stripped, accelerator = strip_accelerator(text, marker)
    return Prepared(tuple(split_line(line) for line in stripped.split("\n")), accelerator)


def assemble(prepared: Prepared, translations: Sequence[str]) -> str:
    """The catalog string from the translations of ``prepared.texts``, in order."""
    given = iter(translations)
    lines = []
    for line in prepared.lines:
        if not line.text:
            lines.append(line.lead + line.tail)
            continue
        out = next(given).strip()
        for stand_in, original in line.stand_ins:
            out = out.replace(stand_in, original)
        if line.tail.strip():  # the model may have kept the colon or ellipsis itself
            out = _TAIL_RE.sub("", out, count=1)
        lines.append(line.lead + out + line.tail)
    acc = prepared.accelerator
    if acc is not None:
        k = acc.line if any(c.isalnum() for c in lines[acc.line]) else 0
        lines[k] = place_accelerator(lines[k], acc.marker, acc.letter)
    return "\n".join(lines)

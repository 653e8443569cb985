"""Which entries of a gettext catalog to fill, filling them, and writing the catalog back.

An entry is filled when it is untranslated: an empty ``msgstr``, or for a plural entry the
empty ``msgstr[i]`` forms. Translated entries (fuzzy ones with a translation too), obsolete
entries, the header and ``translator-credits`` are left alone. Form 0 is translated from
``msgid`` and every other form from ``msgid_plural``: right for the two forms of German or
French; for languages with more forms (Polish, Russian: ``nplurals=3``) forms 1 and up get the
same plural text for the translator to inflect, and with ``nplurals=1`` (Japanese, Chinese)
the single form comes from ``msgid_plural``. What is filled is marked ``fuzzy`` with a
translator comment naming the model.

The catalog is written back by replacing only the text of the entries filled: every other
line of the file (wrapping, comments, obsolete entries) stays byte for byte as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import polib

from service.po.text import Prepared, all_placeholders, assemble, prepare

SKIPPED_MSGIDS = frozenset({"translator-credits"})  # GNOME's slot for the translators' names
WRAP_WIDTH = 79  # what msgmerge and msgcat write


@dataclass
class Task:
    """One entry to fill: the prepared source of each empty form (None: the singular)."""

    entry: polib.POEntry
    forms: dict[int | None, tuple[str, Prepared]]  # form -> (source text, prepared)


@dataclass
class Filled:
    entries: list[polib.POEntry] = field(default_factory=list)
    rejected: dict[str, str] = field(default_factory=dict)  # msgid -> why it was left empty


def plural_count(catalog: polib.POFile) -> int | None:
    """``nplurals`` of the catalog's Plural-Forms header (None when it has none)."""
    match = re.search(r"nplurals\s*=\s*(\d+)", catalog.metadata.get("Plural-Forms", ""))
    return int(match.group(1)) if match else None


def untranslated_forms(entry: polib.POEntry, nplurals: int | None) -> dict[int | None, str]:
    """The empty forms of ``entry`` and the source text each is translated from."""
    if not entry.msgid_plural:
        return {} if entry.msgstr else {None: entry.msgid}
    n = nplurals or max(len(entry.msgstr_plural), 2)
    sources = {0: entry.msgid_plural if n == 1 else entry.msgid}
    sources |= {i: entry.msgid_plural for i in range(1, n)}
    return {i: text for i, text in sources.items() if not entry.msgstr_plural.get(i)}


def plan(catalog: polib.POFile, marker: str | None) -> list[Task]:
    """The entries to fill, in catalog order."""
    nplurals = plural_count(catalog)
    tasks = []
    for entry in catalog:
        if entry.obsolete or not entry.msgid or entry.msgid in SKIPPED_MSGIDS:
            continue
        forms = untranslated_forms(entry, nplurals)
        if forms:
            tasks.append(Task(entry, {i: (text, prepare(text, marker))
                                      for i, text in forms.items()}))
    return tasks


def fill(tasks: list[Task], translations: dict[str, str], note: str) -> Filled:
    """Write the translations into the entries; an entry that would lose a placeholder, or
    has a text the service refused, stays untranslated."""
    result = Filled()
    for task in tasks:
        outputs: dict[int | None, str] = {}
        for form, (source, prepared) in task.forms.items():
            if any(text not in translations for text in prepared.texts):
                result.rejected[task.entry.msgid] = "the service refused a line of it"
                break
            output = assemble(prepared, [translations[text] for text in prepared.texts])
            lost = all_placeholders(source) - all_placeholders(output)
            if lost:
                result.rejected[task.entry.msgid] = f"lost placeholders {sorted(lost)}"
                break
            outputs[form] = output
        else:
            _write(task.entry, outputs, note)
            result.entries.append(task.entry)
    return result


def _write(entry: polib.POEntry, outputs: dict[int | None, str], note: str) -> None:
    for form, output in outputs.items():
        if form is None:
            entry.msgstr = output
        else:
            entry.msgstr_plural[form] = output
    if "fuzzy" not in entry.flags:
        entry.flags.insert(0, "fuzzy")
    entry.tcomment = f"{entry.tcomment}\n{note}" if entry.tcomment else note


def render(path: Path, catalog: polib.POFile, changed: list[polib.POEntry]) -> str:
    """The file at ``path`` with the lines of the ``changed`` entries rewritten."""
    text = path.read_bytes().decode(catalog.encoding)
    lines = text.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    starts = sorted(e.linenum - 1 for e in catalog)
    replace = {e.linenum - 1: e for e in changed}
    out: list[str] = []
    i = 0
    while i < len(lines):
        entry = replace.get(i)
        if entry is None:
            out.append(lines[i])
            i += 1
            continue
        end = _block_end(lines, i, starts)
        block = entry.__unicode__(wrapwidth=WRAP_WIDTH).rstrip("\n")
        out.append(block.replace("\n", newline) + newline)
        i = end
    return "".join(out)


def _block_end(lines: list[str], start: int, starts: list[int]) -> int:
    """The line after the entry that starts at ``start``: a blank line or the next entry."""
    following = [s for s in starts if s > start]
    end = following[0] if following else len(lines)
    for i in range(start, end):
        if not lines[i].strip():
            return i
    return end

"""Parallel corpus: LibreOffice UI translations from Debian's ``libreoffice-l10n-<lang>``.

The package ships gettext ``.mo`` catalogs (English msgid -> translated msgstr). We read
them, strip mnemonic markers, drop useless pairs, dedupe by source and split
deterministically into train/dev/test TSV files. A user TSV (``source<TAB>target``) or
``.po`` file can be used instead.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
import re
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import unquote

from service.placeholders import PLACEHOLDER_RE

log = logging.getLogger(__name__)

MO_DIR = "usr/lib/libreoffice/program/resource/{lang}/LC_MESSAGES"
MAX_CHARS = 200  # longer entries are help-like paragraphs, not UI strings
SPLITS = ("train", "dev", "test")

Pair = tuple[str, str]


def read_mo(path: Path) -> Iterator[Pair]:
    """Yield (msgid, msgstr) from a gettext ``.mo`` file; msgctxt (before ``\\x04``) dropped."""
    data = path.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic == 0x950412DE else ">"
    if struct.unpack(endian + "I", data[:4])[0] != 0x950412DE:
        raise ValueError(f"{path} is not a gettext .mo file")
    _, count, orig_at, trans_at = struct.unpack(endian + "4I", data[4:20])
    for i in range(count):
        olen, ooff = struct.unpack(endian + "2I", data[orig_at + 8 * i : orig_at + 8 * i + 8])
        tlen, toff = struct.unpack(endian + "2I", data[trans_at + 8 * i : trans_at + 8 * i + 8])
        key = data[ooff : ooff + olen].decode("utf-8")
        value = data[toff : toff + tlen].decode("utf-8")
        if not key:  # the header entry
            continue
        source = key.split("\x04", 1)[-1].split("\x00")[0]  # plural forms: keep singular
        yield source, value.split("\x00")[0]


def read_po(path: Path) -> Iterator[Pair]:
    """Yield (msgid, msgstr) from a ``.po`` file (singular forms, non-fuzzy)."""
    entry: dict[str, str] = {}
    key = ""
    fuzzy = False
    for raw in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        line = raw.strip()
        if line.startswith("#,") and "fuzzy" in line:
            fuzzy = True
        elif line.startswith(("msgid ", "msgstr ", "msgstr[0] ", "msgctxt ")):
            key, _, rest = line.partition(" ")
            key = "msgstr" if key == "msgstr[0]" else key
            entry[key] = ast.literal_eval(rest)
        elif line.startswith('"') and key:
            entry[key] += ast.literal_eval(line)
        elif not line:
            if entry.get("msgid") and entry.get("msgstr") and not fuzzy:
                yield entry["msgid"], entry["msgstr"]
            entry, key, fuzzy = {}, "", False


def read_tsv(path: Path) -> Iterator[Pair]:
    for line in path.read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            source, target = line.split("\t", 1)
            yield source, target


def download_catalogs(package: str, catalog_dir: str, workdir: Path) -> tuple[Path, str]:
    """``apt-get download`` + ``dpkg -x`` a Debian package; its catalog dir and .deb name."""
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["apt-get", "download", package], cwd=workdir, check=True)
    deb = next(workdir.glob(f"{package}_*.deb"))
    subprocess.run(["dpkg", "-x", str(deb), str(workdir / "root")], check=True)
    return workdir / "root" / catalog_dir, unquote(deb.name)


_MNEMONIC_RE = re.compile(r"~|_(?=[^\W_])")
_SPACES_RE = re.compile(r"[ \u00a0]{2,}")


def strip_mnemonics(text: str) -> str:
    """Remove accelerator markers (``~File``, ``_Open``, ``Ö_ffnen``) outside placeholders."""
    parts, at = [], 0
    for m in PLACEHOLDER_RE.finditer(text):
        parts.append(_MNEMONIC_RE.sub("", text[at : m.start()]))
        parts.append(m.group(0))
        at = m.end()
    parts.append(_MNEMONIC_RE.sub("", text[at:]))
    return "".join(parts)


def clean(pairs: Iterable[Pair], max_chars: int = MAX_CHARS) -> list[Pair]:
    """Strip mnemonics and whitespace; drop empty, untranslated and long pairs; dedupe by source.

    The first translation of a duplicated source wins, so the result is deterministic.
    """
    seen: dict[str, str] = {}
    for source, target in pairs:
        source = _SPACES_RE.sub(" ", strip_mnemonics(source)).strip()
        target = _SPACES_RE.sub(" ", strip_mnemonics(target)).strip()
        if not source or not target or source == target:
            continue
        if max(len(source), len(target)) > max_chars or source in seen:
            continue
        seen[source] = target
    return list(seen.items())


def split_of(source: str, dev_percent: int = 5, test_percent: int = 5) -> str:
    """Deterministic split by a hash of the source, stable across runs and machines."""
    bucket = int(hashlib.sha1(source.encode("utf-8")).hexdigest(), 16) % 100
    if bucket < test_percent:
        return "test"
    return "dev" if bucket < test_percent + dev_percent else "train"


@dataclass(frozen=True)
class CorpusStats:
    raw: int
    clean: int
    splits: dict[str, int]


def build(pairs: Iterable[Pair], out_dir: Path, source: str = "") -> CorpusStats:
    """Clean ``pairs``; write ``{train,dev,test}.tsv`` and ``corpus.json`` to ``out_dir``."""
    raw = list(pairs)
    cleaned = clean(raw)
    out_dir.mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for pair in cleaned:
        by_split[split_of(pair[0])].append(pair)
    for name, items in by_split.items():
        write_tsv(out_dir / f"{name}.tsv", items)
    stats = CorpusStats(len(raw), len(cleaned), {k: len(v) for k, v in by_split.items()})
    (out_dir / "corpus.json").write_text(json.dumps({"source": source, **asdict(stats)}))
    log.info("corpus: %d raw pairs, %d after cleaning, split %s", stats.raw, stats.clean,
             stats.splits)
    return stats


def write_tsv(path: Path, pairs: Iterable[Pair]) -> None:
    # Tabs/newlines inside a field are written escaped so one line stays one pair.
    def esc(s: str) -> str:
        return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")

    path.write_text("".join(f"{esc(s)}\t{esc(t)}\n" for s, t in pairs), encoding="utf-8")


def load_split(path: Path) -> list[Pair]:
    """Read a TSV written by :func:`write_tsv`."""
    def unesc(s: str) -> str:
        return re.sub(r"\\(.)", lambda m: {"t": "\t", "n": "\n"}.get(m.group(1), m.group(1)), s)

    return [(unesc(s), unesc(t)) for s, t in read_tsv(path)]


def read_source(path: Path | None, lang: str, package: str | None = None
                ) -> tuple[list[Pair], str]:
    """Pairs and a description of where they came from.

    ``path`` is a ``.tsv``/``.po``/``.mo`` file or a directory of ``.mo`` catalogs. With none,
    a Debian package is downloaded: ``libreoffice-l10n-<lang>`` by default (the training
    data), or ``package``'s ``/usr/share/locale/<lang>`` catalogs (other applications' UI
    strings, for independent evaluation).
    """
    if path is None:
        catalogs = MO_DIR if package is None else "usr/share/locale/{lang}/LC_MESSAGES"
        with tempfile.TemporaryDirectory() as tmp:
            mo_dir, deb = download_catalogs(package or f"libreoffice-l10n-{lang}",
                                            catalogs.format(lang=lang), Path(tmp))
            pairs = [pair for mo in sorted(mo_dir.glob("*.mo")) for pair in read_mo(mo)]
            return pairs, f"Debian package {deb} (UI catalogs, en→{lang})"
    if path.is_dir():
        return [pair for mo in sorted(path.glob("*.mo")) for pair in read_mo(mo)], str(path)
    readers = {".tsv": read_tsv, ".po": read_po, ".mo": read_mo}
    if path.suffix not in readers:
        raise ValueError(f"unknown corpus file type {path.suffix!r}: valid are .tsv, .po, .mo")
    return list(readers[path.suffix](path)), str(path)

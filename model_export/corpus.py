"""Parallel corpus: UI translations from the gettext catalogs of Debian packages, widened
with games' catalogs and a bilingual dictionary.

Debian packages ship ``.mo`` catalogs (English msgid -> translated msgstr). The default
corpus reads one language's catalogs of the packages listed in ``model_export/packages/``:
``train.txt`` (LibreOffice, GNOME, KDE, Xfce, GIMP, Inkscape, core tools...), then
``games.txt`` (games and educational software), then the FreeDict English dictionary of
the language (general vocabulary: head word -> first translation); for German, Ding's (one
sense per English word), which FreeDict's eng-deu is generated from. It strips mnemonic
markers and Freeciv's ``?qualifier:`` prefixes, drops useless pairs, dedupes by source
across sources (earlier sources win) and splits deterministically into train/dev/test TSV
files, plus whole applications held out as an out-of-domain test set.
A user TSV (``source<TAB>target``), ``.po``/``.mo`` file or directory can be used instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polib
from tqdm import tqdm

from service.placeholders import PLACEHOLDER_RE

log = logging.getLogger(__name__)

PACKAGE_LISTS = Path(__file__).parent / "packages"  # train.txt, heldout.txt
MAX_CHARS = 200  # longer entries are help-like paragraphs, not UI strings
SPLITS = ("train", "dev", "test")
DEV_SENTENCES = 1500  # a stride sample of dev for choices made on it (averaging, penalty)

Pair = tuple[str, str]


def read_catalog(path: Path) -> Iterator[Pair]:
    """Yield (msgid, msgstr) from a gettext ``.po`` or ``.mo`` file (polib).

    Translated, non-fuzzy entries only; msgctxt is dropped and plural entries give their
    singular pair (``msgstr[0]``).
    """
    catalog = polib.mofile(str(path)) if path.suffix == ".mo" else polib.pofile(str(path))
    for entry in catalog.translated_entries():
        target = entry.msgstr_plural.get(0, "") if entry.msgid_plural else entry.msgstr
        if entry.msgid and target:
            yield entry.msgid, target


def read_tsv(path: Path) -> Iterator[Pair]:
    for line in path.read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            source, target = line.split("\t", 1)
            yield source, target


def read_packages(path: Path, lang: str) -> list[str]:
    """Package names from a list file: one per line, ``#`` starts a comment, ``{lang}``
    stands for the target language (``libreoffice-l10n-{lang}``)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line.replace("{lang}", lang) for line in lines if line]


# FreeDict's English dictionaries in Debian, by target language (dictd format).
FREEDICT = {"de": "dict-freedict-eng-deu", "fr": "dict-freedict-eng-fra",
            "es": "dict-freedict-eng-spa"}
_SENSE_NUMBER_RE = re.compile(r"^\d+\.\s*")
_NOTE_RE = re.compile(r"\s*[(\[<{][^)\]>}]*[)\]>}]\s*")  # (fam.), [grammar], <domain>


def read_freedict(index: Path) -> list[Pair]:
    """(English head word, its first translation) pairs from a FreeDict dictd dictionary,
    read with PyGlossary's DictOrg reader.

    An entry's text is the head word with its pronunciation, then one sense per line
    (numbered when there are several), alternatives separated by commas. Notes in brackets
    are dropped. A lower-case head word also gives its capitalized pair ("daisy" ->
    "Daisy"), as UI labels and names are written.
    """
    from pyglossary.glossary_v2 import Glossary

    Glossary.init()
    glossary = Glossary()
    glossary.directRead(str(index))
    pairs: list[Pair] = []
    for entry in glossary:
        senses = [_SENSE_NUMBER_RE.sub("", line).strip()
                  for line in entry.defi.split("<br />")[1:]]
        translations = [_NOTE_RE.sub(" ", alternative).strip()
                        for sense in senses for alternative in re.split(r"[,;]", sense)]
        translations = [t for t in translations if t]
        word = entry.l_word[0].strip()
        if not translations or not word or word.startswith("00database"):
            continue
        pairs.append((word, translations[0]))
        if word[0].islower():
            pairs.append((word[0].upper() + word[1:],
                          translations[0][0].upper() + translations[0][1:]))
    return pairs


# Ding (TU Chemnitz) in Debian, by target language: one entry per line,
# ``German senses :: English senses``, senses split by `` | `` in step on both sides,
# alternatives within a sense by ``;``. No maintained library reads it (PyGlossary has no
# Ding reader), so :func:`read_ding` parses these lines itself.
DING = {"de": "trans-de-en"}
_DING_NOTE_RE = re.compile(r"\s*(\{[^}]*\}|\[[^\]]*\]|\([^)]*\)|<[^>]*>)\s*")  # {f} [Br.] (of sth.)
_DING_SKIP_RE = re.compile(r"\b(sb|sth|jd[nms]?|etw)\b\.?|…|/|\d")  # templates, not words
_WORD_RE = re.compile(r"\w+")


def read_ding(lines: Iterable[str], target_counts: Counter[str]) -> list[Pair]:
    """(English word, German translation) pairs from Ding's ``de-en`` lines, one per English
    word (a single word, ``to`` dropped from verbs).

    Only the first alternative on both sides of a sense is taken (Ding lists the usual word
    first), at most two German words and no templates (``etw.``, ``sb.``). An English word
    has several such senses ("score": Rechnung, Spielstand, Partitur...); the one whose
    rarest German word is most frequent in ``target_counts`` (the catalogs' target words,
    lower-cased) wins, then the earliest line. Dictionary order alone is alphabetical by
    German head word and would pick arbitrary senses.
    """
    best: dict[str, tuple[int, int, str]] = {}
    for number, line in enumerate(lines):
        if line.startswith("#") or "::" not in line:
            continue
        german, english = line.rstrip("\n").split("::", 1)
        german_senses, english_senses = german.split(" | "), english.split(" | ")
        if len(german_senses) != len(english_senses):
            continue
        for de, en in zip(german_senses, english_senses, strict=True):
            target = _DING_NOTE_RE.sub(" ", de.split(";", 1)[0]).strip()
            source = _DING_NOTE_RE.sub(" ", en.split(";", 1)[0]).strip()
            source = source.removeprefix("to ")
            words = _WORD_RE.findall(target)
            if (not words or len(target.split()) > 2 or len(source.split()) != 1
                    or _DING_SKIP_RE.search(target) or _DING_SKIP_RE.search(source)):
                continue
            rank = (-min(target_counts[w.lower()] for w in words), number, target)
            if source not in best or rank < best[source]:
                best[source] = rank
    return [(source, rank[2]) for source, rank in best.items()]


def deb_ding(deb: Path, target_counts: Counter[str]) -> list[Pair]:
    """:func:`read_ding` on the dictionary inside a ``trans-*`` .deb."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        (path,) = (Path(tmp) / "usr/share/trans").iterdir()
        with path.open(encoding="utf-8") as lines:
            return read_ding(lines, target_counts)


def deb_freedict(deb: Path) -> list[Pair]:
    """:func:`read_freedict` on the dictionary inside a ``dict-freedict-*`` .deb."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["dpkg-deb", "-x", str(deb), tmp], check=True)
        (index,) = Path(tmp).rglob("*.index")
        return read_freedict(index)


def download_debs(packages: Sequence[str], cache: Path) -> dict[str, Path]:
    """``apt-get download`` what is not cached yet; each package's .deb (missing ones left out).

    Packages are fetched in chunks; a chunk apt refuses (a name it does not know) is retried
    one package at a time so one bad name costs only itself.
    """
    cache.mkdir(parents=True, exist_ok=True)

    def cached() -> dict[str, Path]:
        return {deb.name.split("_", 1)[0]: deb for deb in cache.glob("*.deb")}

    todo = [p for p in packages if p not in cached()]
    for start in range(0, len(todo), 100):
        chunk = todo[start : start + 100]
        if subprocess.run(["apt-get", "download", "-q=2", *chunk], cwd=cache).returncode:
            for package in chunk:
                subprocess.run(["apt-get", "download", "-q=2", package], cwd=cache)
    debs = cached()
    missing = [p for p in packages if p not in debs]
    if missing:
        log.warning("%d packages could not be downloaded: %s", len(missing), missing[:20])
    return {p: debs[p] for p in packages if p in debs}


def deb_catalogs(deb: Path, lang: str) -> list[Pair]:
    """The ``lang`` gettext catalogs' pairs inside a .deb (extracted to a temporary dir)."""
    with tempfile.TemporaryDirectory() as tmp:
        tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True,
                             capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp, "--wildcards", "--no-anchored",
                        f"*/{lang}/LC_MESSAGES/*.mo"], input=tar, capture_output=True)
        pairs: list[Pair] = []
        for mo in sorted(Path(tmp).rglob(f"{lang}/LC_MESSAGES/*.mo")):
            try:
                pairs.extend(read_catalog(mo))
            except (UnicodeDecodeError, OSError, ValueError) as e:  # mis-declared charsets
                log.warning("%s: %s skipped (%s)", deb.name, mo.name, e)
        return pairs


# Accelerators: LibreOffice ``~``, GTK ``_``, Qt/KDE ``&`` (entities such as ``&amp;`` are
# placeholders and never reach this expression).
_MNEMONIC_RE = re.compile(r"~|_(?=[^\W_])|&(?=[^\W_])")
_SPACES_RE = re.compile(r"[ \u00a0]{2,}")
# Freeciv's disambiguating prefixes ("?plural:Salishans", "?unit:Warriors"): msgid context
# written into the string, stripped by the game before display.
_QUALIFIER_RE = re.compile(r"^\?[\w ]+:")
# Catalog bookkeeping that is not UI text (GNOME's and KDE's translator-credit entries).
_NOT_UI_RE = re.compile(r"translator[-_ ]credits|NAME OF TRANSLATORS|EMAIL OF TRANSLATORS|"
                        r"^Your names?$|^Your emails?$", re.IGNORECASE)


def strip_mnemonics(text: str) -> str:
    """Remove accelerator markers (``~File``, ``_Open``, ``&Save``, ``Ö_ffnen``) outside
    placeholders."""
    parts, at = [], 0
    for m in PLACEHOLDER_RE.finditer(text):
        parts.append(_MNEMONIC_RE.sub("", text[at : m.start()]))
        parts.append(m.group(0))
        at = m.end()
    parts.append(_MNEMONIC_RE.sub("", text[at:]))
    return "".join(parts)


def clean_pair(source: str, target: str, max_chars: int = MAX_CHARS) -> Pair | None:
    """The pair with mnemonics and extra spaces removed, or None if it is not worth learning:
    empty, untranslated, longer than ``max_chars``, credits, or without a letter."""
    source = _SPACES_RE.sub(" ", strip_mnemonics(_QUALIFIER_RE.sub("", source))).strip()
    target = _SPACES_RE.sub(" ", strip_mnemonics(_QUALIFIER_RE.sub("", target))).strip()
    if not source or not target or source == target:
        return None
    if max(len(source), len(target)) > max_chars or _NOT_UI_RE.search(source):
        return None
    if not any(c.isalpha() for c in PLACEHOLDER_RE.sub("", source)):
        return None
    return source, target


def clean(pairs: Iterable[Pair], max_chars: int = MAX_CHARS) -> list[Pair]:
    """Clean each pair (:func:`clean_pair`) and dedupe by source.

    The first translation of a duplicated source wins, so the result is deterministic.
    """
    seen: dict[str, str] = {}
    for pair in pairs:
        cleaned = clean_pair(*pair, max_chars=max_chars)
        if cleaned and cleaned[0] not in seen:
            seen[cleaned[0]] = cleaned[1]
    return list(seen.items())


def sample(pairs: Sequence[Pair], n: int) -> list[Pair]:
    """Every k-th pair, ``n`` at most: deterministic and spread over the whole file."""
    if n <= 0 or len(pairs) <= n:
        return list(pairs)
    return list(pairs[:: len(pairs) // n][:n])


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
    by_split = _write_splits(cleaned, out_dir)
    stats = CorpusStats(len(raw), len(cleaned), {k: len(v) for k, v in by_split.items()})
    (out_dir / "corpus.json").write_text(json.dumps({"source": source, **asdict(stats)}))
    log.info("corpus: %d raw pairs, %d after cleaning, split %s", stats.raw, stats.clean,
             stats.splits)
    return stats


def _write_splits(pairs: Sequence[Pair], out_dir: Path) -> dict[str, list[Pair]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    by_split: dict[str, list[Pair]] = {name: [] for name in SPLITS}
    for pair in pairs:
        by_split[split_of(pair[0])].append(pair)
    for name, items in by_split.items():
        write_tsv(out_dir / f"{name}.tsv", items)
    return by_split


def build_from_packages(train_packages: Sequence[str], heldout_packages: Sequence[str],
                        lang: str, out_dir: Path, cache: Path,
                        games_packages: Sequence[str] = (),
                        dictionary: bool = True) -> dict[str, Any]:
    """Download the packages' ``lang`` catalogs (and the language's FreeDict and Ding
    dictionaries) and :func:`assemble` the corpus; sources are tagged ``ui``, ``games`` and
    ``dictionary`` (their test slices are written and counted apart)."""
    # FreeDict's eng-deu is generated from Ding (same edition): German reads Ding itself,
    # one sense per English word, instead of FreeDict's 460k head words and phrases.
    source = DING if lang in DING else FREEDICT
    dictionaries = [source[lang]] if dictionary and lang in source else []
    debs = download_debs([*train_packages, *games_packages, *heldout_packages, *dictionaries],
                         cache)

    def catalogs(packages: Sequence[str]) -> list[tuple[str, list[Pair]]]:
        return [(p, deb_catalogs(debs[p], lang)) for p in tqdm(packages, unit="pkg")
                if p in debs]

    train = [(name, "ui", pairs) for name, pairs in catalogs(train_packages)]
    train += [(name, "games", pairs) for name, pairs in catalogs(games_packages)]
    target_counts = Counter(word.lower() for _, _, pairs in train for _, target in pairs
                            for word in _WORD_RE.findall(target))
    for package in dictionaries:
        if package in debs:
            pairs = (deb_freedict(debs[package]) if package.startswith("dict-freedict")
                     else deb_ding(debs[package], target_counts))
            train.append((package, "dictionary", pairs))
    meta = assemble(train, catalogs(heldout_packages), out_dir)
    read = [p for p in dictionaries if p in meta["packages"]]
    meta["source"] = (f"Debian bookworm {lang} catalogs of {len(meta['packages']) - len(read)}"
                      " packages" + "".join(f" and {p}" for p in read))
    (out_dir / "corpus.json").write_text(json.dumps(meta, indent=1))
    return meta


def assemble(train: Sequence[tuple[str, str, list[Pair]]],
             heldout: Sequence[tuple[str, list[Pair]]], out_dir: Path) -> dict[str, Any]:
    """The multi-application corpus: train/dev/test from the ``train`` sources' pairs
    (name, domain, pairs) and an out-of-domain ``heldout.tsv`` from whole applications
    never seen in training.

    Duplicates across sources keep the first source's translation (list order), and each
    source is credited with the unique pairs it added, per source and per domain.
    ``test-<first package>.tsv`` is the test split restricted to the first package (the
    previous corpus' test set), ``train-<first package>.tsv`` its training pairs, and
    ``test-<domain>.tsv`` and ``train-<domain>.tsv`` the test and train splits of each
    domain but the first. The held-out set keeps only sources that occur in no training
    source.
    """
    seen: dict[str, str] = {}
    origin: dict[str, tuple[str, str]] = {}
    counts: dict[str, dict[str, Any]] = {}
    for name, domain, raw in train:
        added = 0
        for pair in raw:
            cleaned = clean_pair(*pair)
            if cleaned and cleaned[0] not in seen:
                seen[cleaned[0]], origin[cleaned[0]] = cleaned[1], (name, domain)
                added += 1
        counts[name] = {"raw": len(raw), "added": added, "domain": domain}
    by_split = _write_splits(list(seen.items()), out_dir)
    first, first_domain = train[0][0], train[0][1]
    first_test = [p for p in by_split["test"] if origin[p[0]][0] == first]
    write_tsv(out_dir / f"test-{first}.tsv", first_test)
    write_tsv(out_dir / f"train-{first}.tsv",  # to oversample when fine-tuning for it
              [p for p in by_split["train"] if origin[p[0]][0] == first])
    slices = {f"test-{first}": len(first_test)}
    domains: dict[str, dict[str, int]] = {}
    for _, domain, _ in train:
        if domain in domains:
            continue
        domains[domain] = {split: sum(origin[p[0]][1] == domain for p in pairs)
                           for split, pairs in by_split.items()}
        if domain != first_domain:
            domain_test = [p for p in by_split["test"] if origin[p[0]][1] == domain]
            write_tsv(out_dir / f"test-{domain}.tsv", domain_test)
            write_tsv(out_dir / f"train-{domain}.tsv",  # to oversample
                      [p for p in by_split["train"] if origin[p[0]][1] == domain])
            slices[f"test-{domain}"] = len(domain_test)

    unseen: dict[str, str] = {}
    heldout_counts: dict[str, dict[str, int]] = {}
    for package, raw in heldout:
        fresh = [p for p in clean(raw) if p[0] not in seen and p[0] not in unseen]
        unseen.update(fresh)
        heldout_counts[package] = {"raw": len(raw), "unseen": len(fresh)}
    write_tsv(out_dir / "heldout.tsv", list(unseen.items()))

    meta = {"source": f"{len(counts)} packages", "raw": sum(c["raw"] for c in counts.values()),
            "clean": len(seen), "splits": {k: len(v) for k, v in by_split.items()},
            "slices": {**slices, "heldout": len(unseen)}, "domains": domains,
            "packages": counts, "heldout_packages": heldout_counts}
    (out_dir / "corpus.json").write_text(json.dumps(meta, indent=1))
    log.info("corpus: %d packages, %d raw pairs, %d after cleaning, split %s, held out %d",
             len(counts), meta["raw"], meta["clean"], meta["splits"], len(unseen))
    return meta


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


def read_source(path: Path | None, lang: str, package: str | None = None,
                cache: Path = Path("work/debs")) -> tuple[list[Pair], str]:
    """Pairs and a description of where they came from.

    ``path`` is a ``.tsv``/``.po``/``.mo`` file or a directory of catalogs. With none, one
    Debian package's ``lang`` catalogs are read (``package``, by default
    ``libreoffice-l10n-<lang>``), e.g. another application's UI strings for evaluation.
    """
    if path is None:
        package = package or f"libreoffice-l10n-{lang}"
        debs = download_debs([package], cache)
        if package not in debs:
            raise ValueError(f"Debian package {package!r} could not be downloaded")
        return deb_catalogs(debs[package], lang), f"Debian package {debs[package].name}"
    if path.is_dir():
        catalogs = sorted([*path.rglob("*.mo"), *path.rglob("*.po")])
        return [pair for c in catalogs for pair in read_catalog(c)], str(path)
    if path.suffix == ".tsv":
        return list(read_tsv(path)), str(path)
    if path.suffix in (".po", ".mo"):
        return list(read_catalog(path)), str(path)
    raise ValueError(f"unknown corpus file type {path.suffix!r}: valid are .tsv, .po, .mo")

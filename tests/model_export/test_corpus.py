import struct
from pathlib import Path

from model_export.corpus import (
    build,
    clean,
    load_split,
    read_mo,
    read_po,
    split_of,
    strip_mnemonics,
    write_tsv,
)


def write_mo(path: Path, entries: dict[str, str]) -> None:
    """A minimal little-endian gettext catalog, laid out as msgfmt does."""
    keys = sorted(entries)
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(entries[k].encode() + b"\0" for k in keys)
    n = len(keys)
    orig_at, trans_at = 28, 28 + 8 * n
    data_at = trans_at + 8 * n
    orig, trans, off = [], [], data_at
    for k in keys:
        orig.append((len(k.encode()), off))
        off += len(k.encode()) + 1
    for k in keys:
        trans.append((len(entries[k].encode()), off))
        off += len(entries[k].encode()) + 1
    header = struct.pack("<7I", 0x950412DE, 0, n, orig_at, trans_at, 0, 0)
    table = b"".join(struct.pack("<2I", *p) for p in orig + trans)
    path.write_bytes(header + table + ids + strs)


def test_read_mo_drops_context_header_and_plural(tmp_path: Path) -> None:
    mo = tmp_path / "sw.mo"
    write_mo(mo, {"": "Content-Type: text/plain", "STR_OPEN\x04~Open": "Ö~ffnen",
                  "%1 file\x00%1 files": "%1 Datei\x00%1 Dateien"})
    assert sorted(read_mo(mo)) == [("%1 file", "%1 Datei"), ("~Open", "Ö~ffnen")]


def test_read_po_skips_fuzzy_and_joins_continuations(tmp_path: Path) -> None:
    po = tmp_path / "x.po"
    po.write_text('msgid ""\nmsgstr "header"\n\nmsgctxt "a"\nmsgid "Save "\n"all"\n'
                  'msgstr "Alle speichern"\n\n#, fuzzy\nmsgid "Close"\nmsgstr "Schliessen"\n',
                  encoding="utf-8")
    assert list(read_po(po)) == [("Save all", "Alle speichern")]


def test_strip_mnemonics_keeps_placeholders() -> None:
    assert strip_mnemonics("~Open") == "Open"
    assert strip_mnemonics("Save _As…") == "Save As…"
    assert strip_mnemonics("Ö_ffnen") == "Öffnen"
    assert strip_mnemonics("$(FILE_NAME) and %PRODUCT_NAME") == "$(FILE_NAME) and %PRODUCT_NAME"
    assert strip_mnemonics("snake _ case") == "snake _ case"


def test_clean_drops_untranslated_empty_long_and_duplicates() -> None:
    pairs = [("~File", "~Datei"), ("OK", "OK"), ("", "x"), ("Edit", ""), ("x" * 300, "y"),
             ("File", "Akte"), ("  Two  spaces ", "Zwei  Leer")]
    assert clean(pairs) == [("File", "Datei"), ("Two spaces", "Zwei Leer")]


def test_split_is_deterministic_and_roughly_proportioned() -> None:
    sources = [f"sentence {i}" for i in range(4000)]
    splits = [split_of(s) for s in sources]
    assert splits == [split_of(s) for s in sources]
    assert 120 < splits.count("test") < 280 and 120 < splits.count("dev") < 280


def test_build_round_trips_tabs_and_newlines(tmp_path: Path) -> None:
    pairs = [(f"Line {i}\nwith\ttab \\ slash", f"Zeile {i}\nmit\tTab \\ Strich") for i in range(50)]
    stats = build(pairs, tmp_path, "test")
    assert stats.clean == 50 and sum(stats.splits.values()) == 50
    loaded = [p for s in ("train", "dev", "test") for p in load_split(tmp_path / f"{s}.tsv")]
    assert sorted(loaded) == sorted(pairs)
    write_tsv(tmp_path / "x.tsv", pairs[:1])
    assert len((tmp_path / "x.tsv").read_text().splitlines()) == 1

"""The README's ``python -m model_export`` commands that need no training: ``corpus`` from a
TSV, a directory of catalogs or one Debian package (from the download cache: nothing is
downloaded), ``evaluate`` on the shipped bundle, and ``ship``."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import polib
import pytest

from model_export.__main__ import main
from model_export.corpus import load_split
from service.bundle import MANIFEST, VARIANT_FILES, hash_files, verify_bundle
from service.translator import DecodeOptions, Translator
from tests.conftest import DEFAULT_BUNDLE, ROOT

Pairs = set[tuple[str, str]]
SPLITS = ("train", "dev", "test")


def splits(data: Path) -> dict[str, list[tuple[str, str]]]:
    return {name: load_split(data / f"{name}.tsv") for name in SPLITS}


def union(data: Path) -> Pairs:
    found = splits(data)
    every = [p for pairs in found.values() for p in pairs]
    assert len(every) == len(set(every)), "a pair in two splits"
    return set(every)


def catalog(pairs: list[tuple[str, str]], extra: Sequence[polib.POEntry] = ()) -> polib.POFile:
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
    po.extend(polib.POEntry(msgid=s, msgstr=t) for s, t in pairs)
    po.extend(extra)
    return po


# --- corpus --------------------------------------------------------------------------------

NUMBERED = [(f"Open document number {i}", f"Dokument Nummer {i} öffnen") for i in range(80)]


def test_corpus_from_a_tsv_builds_clean_train_dev_test(tmp_path: Path) -> None:
    noise = [("_Save all", "Alle _speichern"),  # mnemonics stripped
             ("translator-credits", "Erika Mustermann"),  # credits dropped
             ("Same", "Same"),  # untranslated dropped
             ("", "leer"),  # empty dropped
             ("Long " * 60, "Lang " * 60),  # over-long dropped
             ("Open document number 0", "Another translation")]  # duplicate: first wins
    tsv = tmp_path / "mine.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in NUMBERED + noise), encoding="utf-8")
    main(["corpus", "--input", str(tsv), "--data", str(tmp_path / "a")])
    found = splits(tmp_path / "a")
    assert all(found.values()), {k: len(v) for k, v in found.items()}  # none empty
    assert len(found["train"]) > len(found["dev"]) + len(found["test"])
    assert union(tmp_path / "a") == {*NUMBERED, ("Save all", "Alle speichern")}
    meta = json.loads((tmp_path / "a" / "corpus.json").read_text())
    assert meta["source"] == str(tsv) and meta["raw"] == len(NUMBERED) + len(noise)
    assert meta["clean"] == len(NUMBERED) + 1
    assert meta["splits"] == {k: len(v) for k, v in found.items()}
    # the split depends on the source text, not on its position in the input
    shuffled = NUMBERED + noise
    random.Random(0).shuffle(shuffled)
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in shuffled), encoding="utf-8")
    main(["corpus", "--input", str(tsv), "--data", str(tmp_path / "b")])
    again = splits(tmp_path / "b")  # (which duplicate comes first changed: compare sources)
    assert ({k: {s for s, _ in v} for k, v in again.items()}
            == {k: {s for s, _ in v} for k, v in found.items()})


def test_corpus_from_a_directory_of_catalogs(tmp_path: Path) -> None:
    source = tmp_path / "catalogs"
    (source / "sub").mkdir(parents=True)
    catalog(NUMBERED[:40], [
        polib.POEntry(msgid="Close", msgstr="Schließen", flags=["fuzzy"]),  # not used
        polib.POEntry(msgid="Untranslated", msgstr=""),
        polib.POEntry(msgid="%d file", msgid_plural="%d files",
                      msgstr_plural={0: "%d Datei", 1: "%d Dateien"}),
    ]).save(str(source / "a.po"))
    catalog(NUMBERED[40:]).save_as_mofile(str(source / "sub" / "b.mo"))
    (source / "notes.txt").write_text("Not\ta catalog\n")
    main(["corpus", "--input", str(source), "--data", str(tmp_path / "data")])
    assert union(tmp_path / "data") == {*NUMBERED, ("%d file", "%d Datei")}
    assert all(splits(tmp_path / "data").values())


def fake_deb(root: Path, package: str, catalogs: dict[str, list[tuple[str, str]]]) -> Path:
    """A .deb holding ``usr/share/locale/<lang>/LC_MESSAGES/<package>.mo`` per language."""
    tree = root / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: 1.0-1\nArchitecture: all\n"
        "Maintainer: Test <test@example.org>\nDescription: catalogs for a test\n")
    for lang, pairs in catalogs.items():
        messages = tree / "usr" / "share" / "locale" / lang / "LC_MESSAGES"
        messages.mkdir(parents=True)
        catalog(pairs).save_as_mofile(str(messages / f"{package}.mo"))
    cache = root / "debs"
    cache.mkdir()
    deb = cache / f"{package}_1.0-1_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(tree), str(deb)],
                   check=True, capture_output=True)
    return cache


def test_corpus_from_one_debian_package_in_the_download_cache(tmp_path: Path) -> None:
    """``--debian-package`` reads the package's catalogs of ``--lang``; the .deb is already in
    ``--debs`` (apt-get's download cache), so nothing is downloaded."""
    french = [(s, f"Ouvrir le document {i}") for i, (s, _) in enumerate(NUMBERED)]
    cache = fake_deb(tmp_path, "fake-ui-strings", {"de": NUMBERED, "fr": french})
    for lang, expected in (("de", NUMBERED), ("fr", french)):
        data = tmp_path / f"data-{lang}"
        main(["corpus", "--debian-package", "fake-ui-strings", "--lang", lang,
              "--debs", str(cache), "--data", str(data)])
        assert union(data) == set(expected)
        meta = json.loads((data / "corpus.json").read_text())
        assert meta["source"] == "Debian package fake-ui-strings_1.0-1_all.deb"
    assert [p.name for p in cache.iterdir()] == ["fake-ui-strings_1.0-1_all.deb"]


# --- evaluate ------------------------------------------------------------------------------

EVAL_DATA = {
    "train": [("Open the file", "Datei öffnen"), ("Save as", "Speichern unter"),
              ("Print the page", "Seite drucken")],
    "dev": [("Close the window", "Fenster schließen"), ("Quit", "Beenden")],
    "test": [("Game Over!", "Spiel vorbei!"), ("Start a new game", "Neues Spiel starten"),
             ("Could not save the file %s.", "Die Datei %s konnte nicht gespeichert werden."),
             ("Insert a table", "Tabelle einfügen"), ("Delete the row", "Zeile löschen")],
}


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("eval")
    for name, pairs in EVAL_DATA.items():
        (data / f"{name}.tsv").write_text("".join(f"{s}\t{t}\n" for s, t in pairs),
                                          encoding="utf-8")
    return data


@pytest.mark.parametrize(("split", "limit", "beam", "expected"), [
    ("test", 2, 1, EVAL_DATA["test"][:2]),
    ("test", 2, 4, EVAL_DATA["test"][:2]),
    ("dev", 0, 1, EVAL_DATA["dev"]),
    ("all", 0, 4, EVAL_DATA["train"] + EVAL_DATA["dev"] + EVAL_DATA["test"]),
    ("all", 4, 1, (EVAL_DATA["train"] + EVAL_DATA["dev"])[:4]),
])
def test_evaluate_scores_the_shipped_bundle_on_a_split(
        eval_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], split: str,
        limit: int, beam: int, expected: list[tuple[str, str]]) -> None:
    out = tmp_path / "eval.json"
    main(["evaluate", "--bundle", str(DEFAULT_BUNDLE), "--data", str(eval_data), "--split",
          split, "--limit", str(limit), "--beam", str(beam), "--examples", "0", "--json",
          str(out)])
    printed = json.loads(capsys.readouterr().out)  # --examples 0: the scores alone
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["scores"] == printed and report["beam"] == beam and report["variant"] == "int8"
    assert [(o["source"], o["reference"]) for o in report["outputs"]] == expected
    assert printed["sentences"] == len(expected) and 0 <= printed["bleu"] <= 100
    # the outputs are the service's own translations of the same sentences, at that beam
    translator = Translator(DEFAULT_BUNDLE)
    served = translator.translate([s for s, _ in expected], DecodeOptions(beam_size=beam))
    assert [o["output"] for o in report["outputs"]] == [t.best.text for t in served]


# --- ship ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_variants(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the shipped bundle that also lists an ``fp32`` variant (the int8 files
    under the fp32 names: ship only copies files, it does not run them)."""
    bundle = tmp_path_factory.mktemp("bundle") / "en-de"
    shutil.copytree(DEFAULT_BUNDLE, bundle)
    manifest = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    for variant in ("fp32", "int8"):
        encoder, decoder = VARIANT_FILES[variant]
        shutil.copy(DEFAULT_BUNDLE / VARIANT_FILES["int8"][0], bundle / encoder)
        shutil.copy(DEFAULT_BUNDLE / VARIANT_FILES["int8"][1], bundle / decoder)
        manifest["variants"][variant] = {"encoder": encoder, "decoder": decoder}
    manifest["files"] = hash_files(bundle)
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    assert set(verify_bundle(bundle).variants) == {"fp32", "int8"}
    return bundle


@pytest.mark.parametrize("variants", ["int8", "fp32", "fp32,int8"])
def test_ship_keeps_only_the_variants_asked_for(two_variants: Path, tmp_path: Path,
                                                variants: str) -> None:
    out = tmp_path / "shipped"
    out.mkdir()
    (out / "encoder.onnx").write_bytes(b"stale")  # a previous ship's file: not kept
    main(["ship", "--bundle", str(two_variants), "--variants", variants, "--out", str(out)])
    kept = variants.split(",")
    manifest = verify_bundle(out)
    assert sorted(manifest.variants) == sorted(kept)
    files = {f for v in kept for f in VARIANT_FILES[v]}
    original = verify_bundle(two_variants)
    assert original.shortlist is not None  # shipped with the variants
    assert {p.name for p in out.iterdir()} == {MANIFEST, "README.md", "spm.model",
                                               original.shortlist.file, *files}
    assert manifest.metrics == original.metrics  # the scores of every variant built
    assert manifest.model_id == original.model_id
    text = Translator(out, kept[0]).translate(["Open the file"])[0].best.text
    assert text == Translator(DEFAULT_BUNDLE).translate(["Open the file"])[0].best.text


def test_ship_refuses_a_variant_the_bundle_does_not_have(two_variants: Path,
                                                         tmp_path: Path) -> None:
    out = tmp_path / "shipped"
    refused = subprocess.run(
        [sys.executable, "-m", "model_export", "ship", "--bundle", str(two_variants),
         "--variants", "int4", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert refused.returncode == 1
    assert refused.stderr.strip() == f"cannot ship ['int4']: {two_variants} has fp32, int8"
    assert not out.exists()  # refused before anything was written
    with pytest.raises(SystemExit, match=r"cannot ship \['fp32'\]: .* has int8$"):
        main(["ship", "--bundle", str(DEFAULT_BUNDLE), "--variants", "fp32", "--out",
              str(out)])
    assert not out.exists()

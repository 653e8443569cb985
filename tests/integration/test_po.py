"""attn-translate-po against a real server, on real catalogs the model never saw
(tests/data/po/: two GNOME games from Debian, part of their entries blanked)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import polib
import pytest

from service.placeholders import find_placeholders
from tests.conftest import ROOT
from tests.integration.conftest import Server, free_port, start_server

DATA = ROOT / "tests" / "data" / "po"
CATALOGS = ["swell-foop", "gnome-chess"]
PRINTF = re.compile(r"%(?:\d+\$)?[-+ #0]*\d*[sdu]")  # what these catalogs use
ACCELERATOR = re.compile(r"_(?=[^\W_])")
Key = tuple[str | None, str]


def run_tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.po.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


def entries(path: Path) -> dict[Key, polib.POEntry]:
    return {(e.msgctxt, e.msgid): e for e in polib.pofile(str(path))}


def blocks(path: Path) -> dict[Key, str]:
    """Each entry's text in the file, as written."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    catalog = polib.pofile(str(path))
    result = {}
    for e in catalog:
        end = e.linenum - 1
        while end < len(lines) and lines[end].strip():
            end += 1
        result[(e.msgctxt, e.msgid)] = "".join(lines[e.linenum - 1:end])
    return result


def forms(entry: polib.POEntry) -> dict[int | None, str]:
    return dict(entry.msgstr_plural) if entry.msgid_plural else {None: entry.msgstr}


def is_empty(entry: polib.POEntry) -> bool:
    return not any(forms(entry).values())


@pytest.fixture(scope="module")
def filled(server: Server, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, tuple[Path, Path, str]]]:
    """catalog name -> (input, output, the tool's stdout)."""
    tmp = tmp_path_factory.mktemp("po")
    result = {}
    for name in CATALOGS:
        source, out = DATA / f"{name}.po", tmp / f"{name}.out.po"
        done = run_tool(source, "--url", server.url, "--out", out)
        assert done.returncode == 0, done.stderr
        result[name] = (source, out, done.stdout)
    yield result


@pytest.mark.parametrize("name", CATALOGS)
def test_fills_every_untranslated_entry_fuzzy_with_the_model_named(
        name: str, filled: dict[str, tuple[Path, Path, str]], server: Server) -> None:
    source, out, summary = filled[name]
    before, after = entries(source), entries(out)
    assert list(before) == list(after)  # same entries, same order, msgctxt kept
    model = httpx.get(server.url + "/model", timeout=10).json()
    todo = [k for k, e in before.items()
            if is_empty(e) and not e.obsolete and k[1] != "translator-credits"]
    assert todo and f"filled {len(todo)} of " in summary
    for key in todo:
        entry = after[key]
        assert all(forms(entry).values()), key
        assert "fuzzy" in entry.flags, key
        assert model["model_id"] in entry.tcomment and model["variant"] in entry.tcomment


@pytest.mark.parametrize("name", CATALOGS)
def test_translated_fuzzy_and_obsolete_entries_are_byte_identical(
        name: str, filled: dict[str, tuple[Path, Path, str]]) -> None:
    source, out, _ = filled[name]
    before, after = blocks(source), blocks(out)
    kept = [k for k, e in entries(source).items() if not is_empty(e) or e.obsolete]
    assert kept
    for key in kept:
        assert after[key] == before[key], key
    header = source.read_text(encoding="utf-8").split("\n\n")[0]
    assert out.read_text(encoding="utf-8").startswith(header + "\n\n")
    if name == "swell-foop":  # the fuzzy and the obsolete entry of the test data
        assert "#, fuzzy\nmsgid \"Zealous animation\"\nmsgstr \"Sehr viel Animation\"\n" in (
            after[(None, "Zealous animation")])
        assert after[(None, "Is this the first run")].startswith("#~ msgid")


@pytest.mark.parametrize("name", CATALOGS)
def test_placeholders_accelerators_lines_and_plurals_are_kept(
        name: str, filled: dict[str, tuple[Path, Path, str]]) -> None:
    source, out, _ = filled[name]
    before, after = entries(source), entries(out)
    filled_keys = [k for k, e in before.items() if is_empty(e) and "fuzzy" in after[k].flags]
    differs = 0
    for key in filled_keys:
        entry = after[key]
        for form, text in forms(entry).items():
            origin = entry.msgid if form in (None, 0) else entry.msgid_plural
            assert Counter(PRINTF.findall(text)) == Counter(PRINTF.findall(origin)), (key, text)
            assert Counter(find_placeholders(text)) >= Counter(find_placeholders(origin))
            assert len(ACCELERATOR.findall(text)) == len(ACCELERATOR.findall(origin)), text
            assert text.count("\n") == origin.count("\n"), text
            assert text.endswith("…") == origin.endswith("…"), text
            differs += text != origin
        if entry.msgid_plural:
            assert set(entry.msgstr_plural) == {0, 1}  # German: nplurals=2
    # it translated: most outputs are not the English source (names like "Swell Foop" may be)
    assert differs >= 0.7 * len(filled_keys)


@pytest.mark.parametrize("name", CATALOGS)
def test_msgfmt_accepts_the_output_fuzzy_entries_included(
        name: str, filled: dict[str, tuple[Path, Path, str]], tmp_path: Path) -> None:
    msgfmt = shutil.which("msgfmt")
    if msgfmt is None:
        pytest.skip("msgfmt not installed (Debian package gettext: `make tools`)")
    _, out, _ = filled[name]
    for extra in ([], ["--use-fuzzy"]):  # --use-fuzzy: the filled entries' formats checked too
        done = subprocess.run([msgfmt, "--check", *extra, "-o", str(tmp_path / "x.mo"),
                               str(out)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


def test_in_place_and_dry_run(server: Server, tmp_path: Path) -> None:
    path = tmp_path / "gnome-chess.po"
    shutil.copy(DATA / "gnome-chess.po", path)
    dry = run_tool(path, "--url", "http://127.0.0.1:1", "--dry-run")  # needs no server
    assert dry.returncode == 0 and "would fill 23 of 45 entries" in dry.stdout, dry.stderr
    assert path.read_bytes() == (DATA / "gnome-chess.po").read_bytes()
    done = run_tool(path, "--url", server.url)
    assert done.returncode == 0 and f"wrote {path}" in done.stdout, done.stderr
    assert "translating" in done.stderr  # the progress line
    again = run_tool(path, "--url", server.url)  # nothing left to do, nothing changed
    assert again.returncode == 0 and "nothing to fill" in again.stdout


def test_smaller_batches_when_the_server_refuses_large_ones(tmp_path: Path) -> None:
    small = start_server(tmp_path, SERVICE_MAX_TEXTS="4")
    try:
        small.wait("/health/ready", 200)
        out = tmp_path / "out.po"
        done = run_tool(DATA / "swell-foop.po", "--url", small.url, "--out", out,
                        "--batch-size", "32")
        assert done.returncode == 0, done.stderr
        assert "filled 29 of 71 entries" in done.stdout and "0 left untranslated" in done.stdout
        assert "413" in small.log()
    finally:
        small.stop()


def test_clear_errors_for_a_bad_catalog_or_an_unreachable_server(tmp_path: Path) -> None:
    down = run_tool(DATA / "swell-foop.po", "--url", f"http://127.0.0.1:{free_port()}",
                    "--out", tmp_path / "x.po")
    assert down.returncode == 1 and "cannot reach the translation service" in down.stderr
    assert not (tmp_path / "x.po").exists()
    bad = tmp_path / "bad.po"
    bad.write_text('msgstr "no msgid"\n')
    mo = tmp_path / "swell-foop.mo"  # a compiled catalog given by mistake
    polib.pofile(str(DATA / "swell-foop.po")).save_as_mofile(str(mo))
    for path in (bad, mo):
        refused = run_tool(path, "--url", "http://127.0.0.1:1")
        assert refused.returncode == 2, refused.stderr
        assert f"{path}: not a readable gettext catalog" in refused.stderr
    missing = run_tool(tmp_path / "none.po", "--url", "http://127.0.0.1:1")
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_a_glossary_file_keeps_its_terms(server: Server, tmp_path: Path) -> None:
    glossary = tmp_path / "terms.tsv"
    glossary.write_text("game\tPartie\nboard\tSpielbrett\n", encoding="utf-8")
    out = tmp_path / "out.po"
    done = run_tool(DATA / "swell-foop.po", "--url", server.url, "--out", out,
                    "--glossary", glossary)
    assert done.returncode == 0, done.stderr
    before, after = entries(DATA / "swell-foop.po"), entries(out)
    checked = 0
    for key, entry in after.items():
        if not is_empty(before[key]) or not entry.msgstr:
            continue
        for term, target in (("game", "Partie"), ("board", "Spielbrett")):
            if re.search(rf"\b{term}\b", ACCELERATOR.sub("", entry.msgid), re.IGNORECASE):
                assert target.lower() in entry.msgstr.lower(), (entry.msgid, entry.msgstr)
                checked += 1
    assert checked >= 5
    missing = run_tool(DATA / "swell-foop.po", "--url", server.url, "--out", out,
                       "--glossary", tmp_path / "none.tbx")
    assert missing.returncode == 2 and "none.tbx: no such file" in missing.stderr

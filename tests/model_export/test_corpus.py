import json
from collections import Counter
from pathlib import Path

import polib

from model_export.corpus import (
    assemble,
    build,
    clean,
    clean_pair,
    load_split,
    read_catalog,
    read_ding,
    read_freedict,
    read_packages,
    split_of,
    strip_mnemonics,
    write_tsv,
)


def catalog(entries: list[polib.POEntry]) -> polib.POFile:
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8"}
    po.extend(entries)
    return po


def test_read_catalog_mo_and_po_alike(tmp_path: Path) -> None:
    po = catalog([
        polib.POEntry(msgctxt="STR_OPEN", msgid="~Open", msgstr="Ö~ffnen"),
        polib.POEntry(msgid="%1 file", msgid_plural="%1 files",
                      msgstr_plural={0: "%1 Datei", 1: "%1 Dateien"}),
        polib.POEntry(msgid="Close", msgstr="Schliessen", flags=["fuzzy"]),
        polib.POEntry(msgid="Untranslated", msgstr=""),
    ])
    po.save(str(tmp_path / "x.po"))
    po.save_as_mofile(str(tmp_path / "x.mo"))
    expected = [("%1 file", "%1 Datei"), ("~Open", "Ö~ffnen")]
    assert sorted(read_catalog(tmp_path / "x.po")) == expected
    # msgfmt leaves fuzzy entries out of .mo files; polib's writer keeps them
    assert set(expected) <= set(read_catalog(tmp_path / "x.mo"))


RESERVED = ("gedit", "nautilus", "evince", "file-roller", "gnome-disk-utility", "gnome-mines",
            "gnome-sudoku", "aisleriot", "quadrapassel", "five-or-more", "four-in-a-row",
            "gnome-klotski", "gnome-robots", "gnome-tetravex", "iagno", "lightsoff", "tali",
            "hitori", "gnome-nibbles", "gnome-mahjongg", "gnome-taquin",
            "gnome-chess", "swell-foop")  # the last two: the catalogs in tests/data/po/


def test_package_lists_are_readable_and_exclude_reserved_applications() -> None:
    lists = Path(__file__).resolve().parents[2] / "model_export" / "packages"
    train = read_packages(lists / "train.txt", "fr")
    heldout = read_packages(lists / "heldout.txt", "fr")
    games = read_packages(lists / "games.txt", "fr")
    assert train[0] == "libreoffice-l10n-fr" and len(train) > 100 and len(heldout) >= 5
    assert len(games) > 50 and not set(train) & set(heldout) and not set(games) & set(heldout)
    assert not set(train) & set(games)
    assert not [p for p in train + heldout + games if any(r in p for r in RESERVED)]


def test_freedict_entries_give_first_translations_and_capitalized_pairs(tmp_path: Path) -> None:
    # dictd format: the .dict text and an index of "word<TAB>base64 offset<TAB>base64 length"
    entries = {"daisy": "daisy /deizi/\n1. pâquerette (bot.)\n2. marguerite\n",
               "deal": "deal /diːl/\ndonner, distribuer\n",
               "Paris": "Paris /pæris/\nParis\n",
               "spade": "spade /speid/\n[cards] pique\n"}
    b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

    def number(n: int) -> str:
        digits = ""
        while True:
            digits, n = b64[n % 64] + digits, n // 64
            if not n:
                return digits

    text, index = b"", []
    for word, entry in entries.items():
        data = entry.encode("utf-8")
        index.append(f"{word}\t{number(len(text))}\t{number(len(data))}\n")
        text += data
    (tmp_path / "freedict-eng-fra.dict").write_bytes(text)
    (tmp_path / "freedict-eng-fra.index").write_text("".join(sorted(index)), encoding="utf-8")
    pairs = read_freedict(tmp_path / "freedict-eng-fra.index")
    assert sorted(pairs) == sorted([
        ("daisy", "pâquerette"), ("Daisy", "Pâquerette"), ("deal", "donner"), ("Deal", "Donner"),
        ("Paris", "Paris"), ("spade", "pique"), ("Spade", "Pique")])


def test_strip_mnemonics_keeps_placeholders() -> None:
    assert strip_mnemonics("~Open") == "Open"
    assert strip_mnemonics("Save _As…") == "Save As…"
    assert strip_mnemonics("Ö_ffnen") == "Öffnen"
    assert strip_mnemonics("$(FILE_NAME) and %PRODUCT_NAME") == "$(FILE_NAME) and %PRODUCT_NAME"
    assert strip_mnemonics("snake _ case") == "snake _ case"
    assert strip_mnemonics("&Save") == "Save" and strip_mnemonics("Ö&ffnen") == "Öffnen"
    assert strip_mnemonics("Find & Replace &amp; more") == "Find & Replace &amp; more"


def test_clean_strips_freeciv_qualifiers() -> None:
    assert clean_pair("?plural:Salishans", "?plural:Salishaner") == ("Salishans", "Salishaner")
    assert clean_pair("?unit:Warriors", "Krieger") == ("Warriors", "Krieger")
    assert clean_pair("Why? Because: no", "Warum? Weil: nein") == ("Why? Because: no",
                                                                    "Warum? Weil: nein")


DING = """\
# Version :: devel 2023-01-30
Anschrift {f}; Adresse {f} | Anschriften {pl} :: address | addresses
Kerbe {f}; Einschnitt {m} :: notch; score
Partitur {f} [mus.] | Partituren {pl} :: score | scores
Spielstand {m}; Punktestand {m} (Sport) | Es steht 2 zu 1. :: score; scoring | It is 2 to 1.
Spielstand {m} für jdn. :: score for sb.
abbrechen {vt} :: to cancel
Löschtaste {f} :: delete key
"""


def test_ding_takes_first_alternatives_single_words_and_the_sense_the_catalogs_use() -> None:
    counts = Counter({"spielstand": 5, "partitur": 1})
    pairs = dict(read_ding(DING.splitlines(keepends=True), counts))
    # "score" is first in two senses (Partitur, Spielstand): the catalogs' word wins; Kerbe
    # lists it second; templates (jdn.), sentences and multi-word English are left out
    assert pairs == {"address": "Anschrift", "addresses": "Anschriften", "notch": "Kerbe",
                     "score": "Spielstand", "scores": "Partituren", "cancel": "abbrechen"}
    assert dict(read_ding(DING.splitlines(), Counter({"partitur": 9})))["score"] == "Partitur"


def test_clean_drops_untranslated_empty_long_credits_and_duplicates() -> None:
    pairs = [("~File", "~Datei"), ("OK", "OK"), ("", "x"), ("Edit", ""), ("x" * 300, "y"),
             ("File", "Akte"), ("  Two  spaces ", "Zwei  Leer"), ("translator-credits", "Ich"),
             ("Your names", "Max"), ("%s: %d", "%s – %d")]
    assert clean(pairs) == [("File", "Datei"), ("Two spaces", "Zwei Leer")]


def test_assemble_credits_packages_dedupes_and_holds_applications_out(tmp_path: Path) -> None:
    office = [(f"Office string {i}", f"Büro {i}") for i in range(200)]
    desktop = [("Office string 0", "anders"), *[(f"Desk {i}", f"Tisch {i}") for i in range(50)]]
    game = [("Desk 2", "Spieltisch"), *[(f"Card {i}", f"Karte {i}") for i in range(300)]]
    app = [("Desk 1", "Tisch 1"), ("Brand new", "Ganz neu"), ("Brand new", "Doppelt")]
    meta = assemble([("office", "ui", office), ("desktop", "ui", desktop),
                     ("cards", "games", game)], [("app", app)], tmp_path)
    assert meta["packages"] == {"office": {"raw": 200, "added": 200, "domain": "ui"},
                                "desktop": {"raw": 51, "added": 50, "domain": "ui"},
                                "cards": {"raw": 301, "added": 300, "domain": "games"}}
    assert meta["clean"] == 550 and sum(meta["splits"].values()) == 550
    assert sum(meta["domains"]["ui"].values()) == 250
    assert sum(meta["domains"]["games"].values()) == 300
    games_test = load_split(tmp_path / "test-games.tsv")
    assert games_test and all(s.startswith("Card") for s, _ in games_test)
    assert meta["slices"]["test-games"] == len(games_test) == meta["domains"]["games"]["test"]
    assert not (tmp_path / "test-ui.tsv").exists()
    splits = {s: dict(load_split(tmp_path / f"{s}.tsv")) for s in ("train", "dev", "test")}
    assert {**splits["train"], **splits["dev"], **splits["test"]}["Office string 0"] == "Büro 0"
    office_test = load_split(tmp_path / "test-office.tsv")
    assert office_test and {s for s, _ in office_test} <= {s for s, _ in office}
    assert set(office_test) == {p for p in splits["test"].items() if p[0].startswith("Office")}
    assert load_split(tmp_path / "heldout.tsv") == [("Brand new", "Ganz neu")]
    assert json.loads((tmp_path / "corpus.json").read_text())["heldout_packages"] == {
        "app": {"raw": 3, "unseen": 1}}


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

"""Rebuild this directory's catalogs from the Debian bookworm packages (see README.md).

    cd $(mktemp -d) && apt-get download swell-foop=1:41.1-1 gnome-chess=1:43.1-1
    for d in *.deb; do mkdir -p x/${d%%_*} && dpkg-deb -x $d x/${d%%_*}; done
    python tests/data/po/make_slices.py $OLDPWD/x tests/data/po
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import polib

VERSIONS = {"swell-foop": "1:41.1-1", "gnome-chess": "1:43.1-1"}
PRINTF = re.compile(r"%(\d+\$)?[-+ #0]*\d*[sdu]")
CHESS = re.compile(r"^(Black|White) (bishop|queen) (moves from|at %1\$s takes the (white|black) "
                   r"knight)|%s|…|_N|_T|^_Open$|^_Cancel$|^_Help$|^_Resign|game;strategy")
CHESS_CONTEXTS = ("chess-player", "difficulty", "chess-opponent", "chess-move-format")
# swell-foop: the entries blanked (msgctxt, msgid); gnome-chess: every other entry
SWELL_BLANK = {(None, m) for m in (
    "%s, %d color", "%u point", "A_ppearance", "Board size",
    "Clear as many blocks as you can.\nFewer clicks means more points.", "Game Over!",
    "High _Scores", "I want to play that game!\nYou know, they all light-up and you click on "
    "them and they vanish!", "Large", "Let’s _Play", "Nor_mal (15 × 10)", "Score: %u",
    "T_hree colors", "The size of the game board.", "Use more flashy, but slower, animations.",
    "Welcome to Swell Foop", "_Cancel", "_Help", "_Keyboard Shortcuts", "_Large (20 × 15)",
    "_New Game", "_Shapes and Colors", "_Two colors", "game;logic;board;same;matching;")}
SWELL_BLANK |= {("shortcut window", m) for m in (
    "About", "Move keyboard highlight", "Quit", "Start a new game", "Undo")}


def convert(debs: Path, package: str, keep: Callable[[polib.MOEntry], bool]) -> polib.POFile:
    mo = debs / package / "usr/share/locale/de/LC_MESSAGES" / f"{package}.mo"
    po = polib.POFile(wrapwidth=79)
    po.metadata = polib.mofile(str(mo)).metadata
    po.header = (f"German translation of {package} (Debian bookworm {package} "
                 f"{VERSIONS[package]}, {mo.name}), converted back to .po with polib;\n"
                 "a slice for the attn-translate-po tests: see tests/data/po/README.md.")
    for m in polib.mofile(str(mo)):
        if keep(m):
            entry = polib.POEntry(msgctxt=m.msgctxt, msgid=m.msgid, msgid_plural=m.msgid_plural,
                                  msgstr=m.msgstr, msgstr_plural=dict(m.msgstr_plural))
            if PRINTF.search(m.msgid):  # the flag xgettext gives; a .mo does not keep it
                entry.flags.append("c-format")
            po.append(entry)
    return po


def main(debs: Path, out: Path) -> None:
    swell = convert(debs, "swell-foop", lambda e: True)
    chess = convert(debs, "gnome-chess", lambda e: bool(
        e.msgctxt in CHESS_CONTEXTS
        or (e.msgctxt == "shortcut window" and e.msgid.startswith("S"))
        or (not e.msgctxt and CHESS.search(e.msgid))))
    for name, po in (("swell-foop", swell), ("gnome-chess", chess)):
        po.save(str(out / f"{name}.orig.po"))
        for i, entry in enumerate(po):
            blank = ((entry.msgctxt, entry.msgid) in SWELL_BLANK if name == "swell-foop"
                     else i % 2 == 0 and entry.msgid != "translator-credits")
            if blank:
                entry.msgstr = ""
                entry.msgstr_plural = {k: "" for k in entry.msgstr_plural}
        if name == "swell-foop":
            # a translator's fuzzy entry and an obsolete one: both must come back untouched
            po.find("Zealous animation").flags.append("fuzzy")
            po.find("Is this the first run").obsolete = True
        po.save(str(out / f"{name}.po"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

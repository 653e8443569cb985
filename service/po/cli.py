"""``attn-translate-po``: pre-translate the untranslated entries of a gettext catalog.

    attn-translate-po de.po --url http://localhost:8000 [--out de.new.po] [--dry-run]

The model is the service's one for the catalog's language (its ``Language`` header, or
``--target``), or ``--model``.

Exit status: 0 done (or nothing to do), 1 the service is unreachable or refused the work,
2 a bad command line or catalog.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import httpx
import polib
from tqdm import tqdm

from service.client import Client, TranslateError
from service.glossary import NAMED_MAX_ENTRIES, Glossary, GlossaryError, read_glossary
from service.po.batches import translate_all
from service.po.catalog import fill, plan, render
from service.po.text import MARKERS, detect_marker

log = logging.getLogger("attn-translate-po")


class Failure(Exception):
    """A clear one-line message and the exit status that goes with it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="attn-translate-po", description="Fill the untranslated entries of a .po catalog "
        "with machine translations (marked fuzzy, for a translator to review).")
    parser.add_argument("catalog", type=Path, help="the .po file")
    parser.add_argument("--url", required=True, help="the service, e.g. http://localhost:8000")
    parser.add_argument("--out", type=Path, help="write here instead of in place")
    parser.add_argument("--target", help="target language code (default: the catalog's "
                        "Language header)")
    parser.add_argument("--model", help="the service's model id (GET /models); default: the "
                        "one translating English into the target language")
    parser.add_argument("--glossary", type=Path, help="terms to keep: a .tbx, .csv, .tsv or "
                        ".po glossary (English -> the target language)")
    parser.add_argument("--dry-run", action="store_true",
                        help="count what would be filled; contact no service, write nothing")
    parser.add_argument("--api-key", default=os.environ.get("ATTN_TRANSLATE_API_KEY"),
                        help="API key (default: $ATTN_TRANSLATE_API_KEY)")
    parser.add_argument("--beam-size", type=int, help="default: the service's")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="texts per request (smaller when the service answers 413)")
    parser.add_argument("--accelerator", choices=["auto", "none", *MARKERS], default="auto",
                        help="the catalog's accelerator marker (auto: the most common one)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    return parser.parse_args(argv)


def read_catalog(path: Path) -> polib.POFile:
    if not path.is_file():
        raise Failure(f"{path}: no such file", 2)
    try:
        return polib.pofile(str(path), wrapwidth=79)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise Failure(f"{path}: not a readable gettext catalog: {exc}", 2) from exc


def target_language(catalog: polib.POFile, given: str | None) -> str | None:
    """``--target``, else the catalog's ``Language`` header as a language code (``pt_BR``,
    ``de@latin`` -> ``pt``, ``de``); None if neither says."""
    language = given or catalog.metadata.get("Language", "")
    code = language.split("@")[0].replace("-", "_").split("_")[0].strip().lower()
    return code or None


def choose_model(client: Client, url: str, target: str | None, model: str | None
                 ) -> dict[str, Any]:
    """The service's model for the catalog (``/models/{id}``); checks that the service is
    there, ready and translates into ``target``."""
    try:
        if model is None and target is not None:
            served = [m for m in client.models() if m["state"] == "ready"]
            fits = [m for m in served if m.get("target") == target and m.get("source") == "en"]
            if len(fits) != 1:
                pairs = ", ".join(f"{m['id']} ({m.get('source')} -> {m.get('target')})"
                                  for m in served)
                raise Failure(f"the translation service at {url} has "
                              f"{'no' if not fits else 'more than one'} model translating "
                              f"English into {target!r} (--target, or the catalog's Language "
                              f"header); it serves: {pairs}"
                              + ("; name one with --model" if fits else ""), 1)
            model = fits[0]["id"]
        return client.model(model)
    except httpx.TransportError as exc:
        raise Failure(f"cannot reach the translation service at {url}: {exc}", 1) from exc
    except TranslateError as exc:
        raise Failure(f"the translation service at {url} answered {exc}", 1) from exc


def read_terms(path: Path, target: str | None) -> Glossary:
    """The ``--glossary`` file's terms (English -> ``target``)."""
    if not path.is_file():
        raise Failure(f"{path}: no such file", 2)
    try:
        return Glossary(read_glossary(path, "en", target or ""), NAMED_MAX_ENTRIES)
    except (GlossaryError, OSError, ValueError) as exc:
        raise Failure(f"{path}: not a usable glossary: {exc}", 2) from exc


def model_note(info: dict[str, Any]) -> str:
    """The translator comment naming the model."""
    return f"machine-translated by {info['model_id']} ({info['variant']}): review"


def run(args: argparse.Namespace) -> str:
    """Fill the catalog; return the summary line."""
    catalog = read_catalog(args.catalog)
    marker = (detect_marker(e.msgid for e in catalog) if args.accelerator == "auto"
              else None if args.accelerator == "none" else args.accelerator)
    tasks = plan(catalog, marker)
    total = sum(1 for e in catalog if not e.obsolete)
    texts = list(dict.fromkeys(t for task in tasks for _, p in task.forms.values()
                               for t in p.texts))
    if args.dry_run:
        return (f"would fill {len(tasks)} of {total} entries ({len(texts)} distinct lines to "
                f"translate; accelerator {marker or 'none'}); nothing written")
    if not tasks:
        return f"nothing to fill: all {total} entries are translated"
    target = target_language(catalog, args.target)
    glossary = read_terms(args.glossary, target) if args.glossary else None
    with Client(args.url, api_key=args.api_key, timeout=args.timeout) as client:
        info = choose_model(client, args.url, target, args.model)
        note = model_note(info)
        with tqdm(total=len(texts), unit="line", desc="translating", file=sys.stderr,
                  disable=False) as bar:
            try:
                outcome = translate_all(client, texts, args.batch_size, args.beam_size,
                                        progress=bar.update, model=info.get("id"),
                                        glossary=glossary)
            except httpx.TransportError as exc:
                raise Failure(f"lost the translation service at {args.url}: {exc}", 1) from exc
            except TranslateError as exc:
                raise Failure(f"the translation service refused the work: {exc}", 1) from exc
    filled = fill(tasks, outcome.translations, note)
    for msgid, why in filled.rejected.items():
        log.warning("left untranslated: %r: %s", msgid[:60], why)
    out = args.out or args.catalog
    try:
        out.write_bytes(render(args.catalog, catalog, filled.entries).encode(catalog.encoding))
    except OSError as exc:
        raise Failure(f"cannot write {out}: {exc}", 2) from exc
    plural = sum(1 for e in filled.entries if e.msgid_plural)
    return (f"filled {len(filled.entries)} of {total} entries ({plural} plural, marked fuzzy; "
            f"{len(filled.rejected)} left untranslated) in {outcome.requests} requests; "
            f"wrote {out}")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="attn-translate-po: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per request
    args = parse_args(argv)
    try:
        print(run(args))
    except Failure as exc:
        print(f"attn-translate-po: error: {exc}", file=sys.stderr)
        return exc.status
    return 0


if __name__ == "__main__":
    sys.exit(main())

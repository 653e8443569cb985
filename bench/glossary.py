"""``python -m bench.glossary``: what finding a glossary's terms costs, by glossary size, with
the service's trie-shaped expression against one alternation of every term (longest first:
what the service did before), and what layering a request's own entries on a named glossary
costs against compiling the union.

Synthetic glossaries of one- to three-word terms (seeded), 20 UI strings of
``tests/data/ui-strings.tsv``; both matchers find the same terms (checked). Interleaved
rounds; medians. Writes bench/glossary.json and bench/glossary.md.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import string
import time
from collections.abc import Callable

from bench.measure import ROOT
from service.glossary import Glossary

SIZES = (20, 256, 2_000, 20_000)


def entries(size: int, seed: int = 0) -> dict[str, str]:
    rng = random.Random(seed)
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10)))
             for _ in range(max(2 * size, 100))]
    words[:6] = ["file", "folder", "trash", "window", "settings", "document"]  # real hits
    out: dict[str, str] = {}
    while len(out) < size:
        out[" ".join(rng.sample(words[: max(size, 6)], rng.choice((1, 1, 2, 3))))] = (
            f"t{len(out)}")
    return out


def alternation(terms: dict[str, str]) -> Callable[[str], list[tuple[int, int]]]:
    """One expression of every term, longest first (the matcher the trie replaced)."""
    keys = sorted((" ".join(t.split()).casefold() for t in terms), key=len, reverse=True)
    alternatives = "|".join(r"\s+".join(map(re.escape, k.split())) for k in keys)
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
    return lambda text: [m.span() for m in pattern.finditer(text)]


def median_seconds(work: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


OWN = {"Trash": "Papierkorb", "window": "Fenster"}  # a request's own entries


def measure(size: int, texts: list[str], rounds: int) -> dict[str, object]:
    terms = entries(size)
    started = time.perf_counter()
    trie = Glossary(terms, size)
    trie_build = time.perf_counter() - started
    started = time.perf_counter()
    old = alternation(terms)
    old_build = time.perf_counter() - started
    for text in texts:  # the same terms found
        assert [(t.start, t.end) for t in trie.find(text)] == old(text), text
    own = Glossary(OWN)
    union = {k: v for k, v in terms.items() if k.casefold() not in {o.casefold() for o in OWN}}
    union.update(OWN)
    trie_find = median_seconds(lambda: [trie.find(t) for t in texts], rounds)
    old_find = median_seconds(lambda: [old(t) for t in texts], rounds)
    layered = median_seconds(lambda: trie.merged(own), rounds)
    compiled = median_seconds(lambda: Glossary(union, len(union)), max(1, rounds // 3))
    return {"terms": size, "find_ms_per_text": {
        "trie": 1000 * trie_find / len(texts), "alternation": 1000 * old_find / len(texts)},
        "build_s": {"trie": trie_build, "alternation": old_build},
        "merge_ms": {"layered": 1000 * layered, "compiled union": 1000 * compiled}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    lines = (ROOT / "tests" / "data" / "ui-strings.tsv").read_text("utf-8").splitlines()
    texts = [line.split("\t")[0] for line in lines[1:21]]
    texts[0] = "Move the selected file to the trash folder before closing the window"
    rows = []
    for size in SIZES:
        rows.append(measure(size, texts, args.rounds))
        print(rows[-1], flush=True)
    out = ROOT / "bench"
    (out / "glossary.json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    md = ["| terms | find, trie (ms/text) | find, alternation (ms/text) | ratio | build trie / "
          "alternation (s) | merge a request's 2 entries: layered / compiled union (ms) |",
          "|---|---|---|---|---|---|"]
    for r in rows:
        f, b, m = r["find_ms_per_text"], r["build_s"], r["merge_ms"]
        assert isinstance(f, dict) and isinstance(b, dict) and isinstance(m, dict)
        md.append(f"| {r['terms']:,} | {f['trie']:.3f} | {f['alternation']:.3f} | "
                  f"{f['alternation'] / f['trie']:.1f}× | {b['trie']:.2f} / "
                  f"{b['alternation']:.2f} | {m['layered']:.3f} / {m['compiled union']:.1f} |")
    (out / "glossary.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    print("\n".join(md))


if __name__ == "__main__":
    main()

"""``python -m bench.places``: a small request behind one request that holds every place.

A request may hold as many texts as the running batch has places (64 and 64 by default).
This tree lets a request with nothing running start one sentence beyond the cap (up to an
eighth more); ``--baseline`` (a checkout of the commit before, ``make bench-places`` creates
it) made it wait for a place. Both serve the shipped en-de bundle, side by side in one run: a
3-word request alone, then 0.5 s after a heavy request of 32 and of 64 long texts at beam 8
(``bench.engine``'s head-of-line test); medians of ``--rounds``. Writes bench/places.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.engine import bench_head_of_line, heavy_texts
from bench.measure import ROOT, start_service


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.places")
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "en-de")
    parser.add_argument("--baseline", type=Path, default=ROOT / "work" / "places-baseline")
    parser.add_argument("--data", type=Path, default=ROOT / "work" / "data")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "places.json")
    args = parser.parse_args()

    from model_export.corpus import load_split
    from service.translator import Translator

    heldout = [s for s, _ in load_split(args.data / "heldout.tsv")][::-1]
    translator = Translator(args.bundle)
    # 64 texts x 8 beams x 100 subwords stays under SERVICE_MAX_REQUEST_TOKENS (65,536)
    heavy = {n: heavy_texts(translator, heldout, n, 100) for n in (32, 64)}
    results: dict[str, Any] = {}
    for name, src in (("baseline", args.baseline), ("this tree", ROOT)):
        proc = start_service(args.bundle, src)
        proc.wait_for("/health/ready")
        results[name] = {}
        for n, texts in heavy.items():
            r = bench_head_of_line(proc.url, texts, "Open the file", args.rounds)
            results[name][str(n)] = r
            print(f"{name}, heavy request of {n} texts: {json.dumps(r)}", flush=True)
        proc.stop()
    args.out.write_text(json.dumps(results, indent=2))
    print("| server | heavy request | 3-word request during it, p50 ms (max) | alone, ms | "
          "ratio | heavy request ms |\n|---|---|---|---|---|---|")
    for name, by_n in results.items():
        for n, r in by_n.items():
            print(f"| {name} | {n} texts | {r['small_p50_ms']:.0f} ({r['small_max_ms']:.0f}) | "
                  f"{r['small_idle_ms']:.0f} | {r['small_over_idle']:.1f}× | "
                  f"{r['heavy_p50_ms']:.0f} |")


if __name__ == "__main__":
    main()

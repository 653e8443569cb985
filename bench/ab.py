"""A/B of two source trees serving the same bundle over HTTP: the engine issue's ten strings,
beam 4, 1 and 64 clients, interleaved rounds, medians.

    git worktree add work/ab-baseline COMMIT
    python -m bench.ab --baseline work/ab-baseline [--bundle models/en-de]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from bench.measure import ROOT, TEN, start_service, wrk


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ab")
    parser.add_argument("--baseline", type=Path, required=True, help="the other source tree")
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "en-de")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trees = {"baseline": args.baseline.resolve(), "this tree": ROOT}
    bodies: list[object] = [{"text": t, "beam_size": 4} for t in TEN]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for round_ in range(args.rounds):
        for name, src in trees.items():
            proc = start_service(args.bundle, src)
            proc.wait_for("/health/ready")
            wrk(proc.url, bodies, 4, 3)  # warm up
            run = {}
            for c in (1, 64):
                load = wrk(proc.url, bodies, c, args.seconds, proc.process.pid)
                run[str(c)] = {"rps": load.rps, "p50_ms": load.p50_ms, "p99_ms": load.p99_ms,
                               "errors": load.errors}
            print(f"round {round_} {name}: {json.dumps(run)}", flush=True)
            runs[name].append(run)
            proc.stop()
    print(f"\n| tree | req/s, 1 client | p50 ms, 1 | req/s, 64 clients | p50 ms, 64 | "
          f"p99 ms, 64 |  (medians of {args.rounds} rounds, {args.seconds:.0f} s each)")
    print("|---|---|---|---|---|---|")
    for name, per_round in runs.items():
        med = {c: {k: statistics.median(r[c][k] for r in per_round)
                   for k in ("rps", "p50_ms", "p99_ms")} for c in ("1", "64")}
        print(f"| {name} | {med['1']['rps']:.1f} | {med['1']['p50_ms']:.1f} | "
              f"{med['64']['rps']:.1f} | {med['64']['p50_ms']:.0f} | {med['64']['p99_ms']:.0f} |")
    ratios = [b["64"]["rps"] / a["64"]["rps"]
              for a, b in zip(runs["baseline"], runs["this tree"], strict=True)]
    print(f"\n64 clients, this tree / baseline per round: "
          f"{', '.join(f'{r:.2f}x' for r in ratios)}")


if __name__ == "__main__":
    main()

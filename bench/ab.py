"""A/B of source trees over HTTP: the engine issue's ten strings, beam 4, 1 and 64 clients,
interleaved rounds, medians; each tree serves its own bundle (the baseline its checkout's
``models/en-de`` unless ``--baseline-bundle``), this tree with and without its shortlist.
Writes bench/ab.json and bench/ab.md.

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
    parser.add_argument("--baseline-bundle", type=Path,
                        help="default: the baseline tree's models/en-de")
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "en-de")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    baseline = args.baseline.resolve()
    systems: dict[str, tuple[Path, Path, dict[str, str]]] = {
        "baseline": (baseline, args.baseline_bundle or baseline / "models" / "en-de", {}),
        "this tree, whole vocabulary": (ROOT, args.bundle, {"SERVICE_SHORTLIST": "false"}),
        "this tree": (ROOT, args.bundle, {}),
    }
    bodies: list[object] = [{"text": t, "beam_size": 4} for t in TEN]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for round_ in range(args.rounds):
        for name, (src, bundle, env) in systems.items():
            proc = start_service(bundle, src, **env)
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
    result = {"seconds": args.seconds, "rounds": args.rounds, "runs": runs,
              "median": {name: {c: {k: statistics.median(r[c][k] for r in per_round)
                                    for k in ("rps", "p50_ms", "p99_ms")} for c in ("1", "64")}
                         for name, per_round in runs.items()},
              "ratio_64_to_baseline": {name: [b["64"]["rps"] / a["64"]["rps"] for a, b in zip(
                  runs["baseline"], per_round, strict=True)] for name, per_round in runs.items()}}
    (ROOT / "bench" / "ab.json").write_text(json.dumps(result, indent=1) + "\n")
    (ROOT / "bench" / "ab.md").write_text(report(result))
    print(report(result))


def report(r: dict[str, Any]) -> str:
    lines = ["| system | req/s, 1 client | p50 ms, 1 | req/s, 64 clients | p50 ms, 64 | "
             "p99 ms, 64 | 64 clients / 1 | 64 clients / baseline (each round) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, med in r["median"].items():
        ratios = ", ".join(f"{x:.2f}×" for x in r["ratio_64_to_baseline"][name])
        lines.append(f"| {name} | {med['1']['rps']:.1f} | {med['1']['p50_ms']:.1f} | "
                     f"{med['64']['rps']:.1f} | {med['64']['p50_ms']:.0f} | "
                     f"{med['64']['p99_ms']:.0f} | {med['64']['rps'] / med['1']['rps']:.2f}× | "
                     f"{ratios} |")
    return (f"Medians of {r['rounds']} interleaved rounds of {r['seconds']:.0f} s "
            "(`python -m bench.ab`), beam 4, the engine issue's ten strings.\n\n"
            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

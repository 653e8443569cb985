"""A/B of source trees over HTTP: the engine issue's ten strings, beam 4, 1 and 64 clients,
interleaved rounds, medians; each tree serves its own bundle (the baseline its checkout's
``models/en-de`` unless ``--baseline-bundle``), this tree with and without its shortlist.
``--same-model``: the baseline serves this tree's model instead, as a bundle of manifest
format 3 (the same files without the shortlist, which older trees cannot read), so that only
the engines differ. ``--workers N`` (default 2) adds this tree with ``SERVICE_WORKERS=N``
(1: not). Writes bench/ab.json and bench/ab.md (``--out``: another name).

    git worktree add work/ab-baseline COMMIT
    python -m bench.ab --baseline work/ab-baseline [--bundle models/en-de] [--same-model]
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
    parser.add_argument("--same-model", action="store_true",
                        help="the baseline serves this tree's model (a format-3 copy)")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2,
                        help="also this tree with SERVICE_WORKERS=N (1: not)")
    parser.add_argument("--out", default="ab", help="bench/OUT.json and bench/OUT.md")
    args = parser.parse_args()
    baseline = args.baseline.resolve()
    baseline_bundle = args.baseline_bundle or baseline / "models" / "en-de"
    if args.same_model:
        baseline_bundle = format_3_copy(args.bundle, ROOT / "work" / "ab-format-3")
    systems: dict[str, tuple[Path, Path, dict[str, str]]] = {
        "baseline": (baseline, baseline_bundle, {}),
        "this tree, whole vocabulary": (ROOT, args.bundle, {"SERVICE_SHORTLIST": "false"}),
        "this tree": (ROOT, args.bundle, {}),
    }
    if args.workers > 1:
        systems[f"this tree, {args.workers} workers"] = (
            ROOT, args.bundle, {"SERVICE_WORKERS": str(args.workers)})
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
    result = {"seconds": args.seconds, "rounds": args.rounds, "same_model": args.same_model,
              "runs": runs,
              "median": {name: {c: {k: statistics.median(r[c][k] for r in per_round)
                                    for k in ("rps", "p50_ms", "p99_ms")} for c in ("1", "64")}
                         for name, per_round in runs.items()},
              "ratio_64_to_baseline": {name: [b["64"]["rps"] / a["64"]["rps"] for a, b in zip(
                  runs["baseline"], per_round, strict=True)] for name, per_round in runs.items()}}
    (ROOT / "bench" / f"{args.out}.json").write_text(json.dumps(result, indent=1) + "\n")
    (ROOT / "bench" / f"{args.out}.md").write_text(report(result))
    print(report(result))


def format_3_copy(bundle: Path, out: Path) -> Path:
    """``bundle`` without its shortlist, as manifest format 3 (what trees before the
    shortlist read): the same ONNX files, tokenizer and decoding rules."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    if manifest["format_version"] != 4:
        raise SystemExit(f"{bundle}: manifest format {manifest['format_version']}, not 4")
    shortlist = manifest.pop("shortlist", None)
    if shortlist:
        del manifest["files"][shortlist["file"]]
    out.mkdir(parents=True, exist_ok=True)
    for name in manifest["files"]:
        (out / name).write_bytes((bundle / name).read_bytes())
    manifest["format_version"] = 3
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


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
    model = ("the baseline serves this tree's model (`--same-model`)" if r.get("same_model")
             else "each tree serves its own bundle")
    return (f"Medians of {r['rounds']} interleaved rounds of {r['seconds']:.0f} s "
            f"(`python -m bench.ab`), beam 4, the engine issue's ten strings; {model}.\n\n"
            + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Same model both sides: OpenNMT-py 3.5.1's ``onmt_server`` and this service on one imported
OpenNMT-py checkpoint (the GRU fixture of tests/data/opennmt), beam 4, 1 and 64 clients.

    make bench-opennmt        # = sh scripts/opennmt-fixtures.sh's venv + python -m bench.opennmt

``onmt_server`` runs from the fixture script's virtual environment (work/onmt-venv) with its
SentencePiece tokenizer and ``beam_size 4``; the service serves the bundle written by
``python -m model_export import-opennmt`` (fp32: the same arithmetic as PyTorch's; int8 too).
Before the load, both answer the same sentences and the translations are compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.measure import ROOT, Proc, free_port, start_service, wrk

FIXTURES = ROOT / "tests" / "data" / "opennmt"
ONMT_VENV = ROOT / "work" / "onmt-venv"


def start_onmt_server(checkpoint: Path, tokenizer: Path, work: Path) -> Proc:
    """``onmt_server`` with one model: beam 4 on CPU, SentencePiece in and out."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "conf.json").write_text(json.dumps({
        "models_root": str(checkpoint.parent),
        "models": [{"id": 100, "model": checkpoint.name, "timeout": -1, "load": True,
                    "opt": {"gpu": -1, "beam_size": 4, "batch_size": 30},
                    "tokenizer": {"type": "sentencepiece", "model": str(tokenizer)}}]}))
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(ONMT_VENV / "bin" / "onmt_server"), "--ip", "127.0.0.1", "--port", str(port),
         "--url_root", "/translator", "--model_config", str(work / "conf.json")],
        env={**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}, cwd=work,
        stdout=(work / "onmt_server.log").open("wb"), stderr=subprocess.STDOUT)
    return Proc(f"http://127.0.0.1:{port}/translator", process, started)


def onmt_translate(url: str, text: str) -> str:
    response = httpx.post(url + "/translate", json=[{"id": 100, "src": text}], timeout=120)
    response.raise_for_status()
    return str(response.json()[0][0]["tgt"])


def ours_translate(url: str, text: str) -> str:
    response = httpx.post(url + "/translate", json={"text": text, "beam_size": 4}, timeout=120)
    response.raise_for_status()
    return str(response.json()["translations"][0]["text"])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.opennmt")
    parser.add_argument("--checkpoint", type=Path, default=FIXTURES / "gru.pt")
    parser.add_argument("--tokenizer", type=Path, default=FIXTURES / "spm.model")
    parser.add_argument("--work", type=Path, default=ROOT / "work" / "bench-opennmt")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "opennmt.json")
    args = parser.parse_args()
    if not (ONMT_VENV / "bin" / "onmt_server").exists():
        sys.exit(f"{ONMT_VENV}/bin/onmt_server not found: run sh scripts/opennmt-fixtures.sh")

    from model_export.corpus import load_split
    from model_export.opennmt import import_opennmt

    sources = [s for s, _ in load_split(FIXTURES / "raw-test.tsv")]
    bundle = args.work / "bundle"
    import_opennmt(args.checkpoint, args.tokenizer, bundle, source_lang="en", target_lang="de",
                   calibration=sources[:100])
    texts = sources[100:140]  # not used for calibration
    systems = {
        "onmt_server": lambda: start_onmt_server(args.checkpoint, args.tokenizer, args.work),
        "ours fp32": lambda: start_service(bundle, SERVICE_VARIANT="fp32"),
        "ours int8": lambda: start_service(bundle, SERVICE_VARIANT="int8"),
    }
    results: dict[str, Any] = {"checkpoint": args.checkpoint.name, "texts": len(texts),
                               "seconds": args.seconds, "rounds": args.rounds,
                               "cpu_count": os.cpu_count()}
    outputs: dict[str, list[str]] = {}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
    for round_ in range(args.rounds):  # interleaved: drifts in machine load hit every system
        for name, start in systems.items():
            proc = start()
            onmt = name == "onmt_server"
            ready = proc.wait_for("/health" if onmt else "/health/ready")
            translate = onmt_translate if onmt else ours_translate
            outputs[name] = [translate(proc.url, t) for t in texts]
            bodies: list[object] = ([[{"id": 100, "src": t}] for t in texts] if onmt
                                    else [{"text": t, "beam_size": 4} for t in texts])
            base = proc.url.removesuffix("/translator")
            path = "/translator/translate" if onmt else "/translate"
            wrk(base, bodies, 4, 3, path=path)  # warm up
            run: dict[str, Any] = {"ready_s": ready}
            for c in (1, 64):
                load = wrk(base, bodies, c, args.seconds, proc.process.pid, path=path)
                run[str(c)] = {"rps": load.rps, "p50_ms": load.p50_ms, "p99_ms": load.p99_ms,
                               "errors": load.errors, "max_rss_mib": load.max_rss_mib}
            print(f"round {round_} {name}: {json.dumps(run)}", flush=True)
            runs[name].append(run)
            proc.stop()
    results["runs"] = runs
    for name, per_round in runs.items():
        results[name] = {"ready_s": round(statistics.median(r["ready_s"] for r in per_round), 2)}
        for clients in ("1", "64"):
            results[name][clients] = {
                k: round(statistics.median(r[clients][k] for r in per_round), 1)
                for k in ("rps", "p50_ms", "p99_ms", "max_rss_mib")}
            results[name][clients]["errors"] = sum(r[clients]["errors"] for r in per_round)
    results["same_translation"] = {
        name: sum(a == b for a, b in zip(outputs[name], outputs["onmt_server"], strict=True))
        for name in systems if name != "onmt_server"}
    results["differences"] = [
        {"source": t, "onmt_server": a, "ours fp32": b}
        for t, a, b in zip(texts, outputs["onmt_server"], outputs["ours fp32"], strict=True)
        if a != b]
    args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    args.out.with_suffix(".md").write_text(report(results))
    print(report(results))


def report(r: dict[str, Any]) -> str:
    onmt = r["onmt_server"]
    lines = [f"### Same OpenNMT-py checkpoint both sides ({r['checkpoint']}, beam 4, "
             f"{r['texts']} UI strings, wrk {r['seconds']:.0f} s per point, medians of "
             f"{r['rounds']} interleaved rounds, {r['cpu_count']} cores)", "",
             "| server | req/s, 1 client | p50 ms, 1 client | req/s, 64 clients | "
             "p50 ms, 64 | p99 ms, 64 | peak RSS MiB | ready s | same text as onmt_server |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in ("onmt_server", "ours fp32", "ours int8"):
        x = r[name]
        same = (f"{r['same_translation'][name]} of {r['texts']}" if name != "onmt_server"
                else "—")
        lines.append(f"| {name} | {x['1']['rps']:.1f} | {x['1']['p50_ms']:.1f} | "
                     f"{x['64']['rps']:.1f} | {x['64']['p50_ms']:.0f} | {x['64']['p99_ms']:.0f} "
                     f"| {max(x['1']['max_rss_mib'], x['64']['max_rss_mib']):.0f} | "
                     f"{x['ready_s']} | {same} |")
    lines += ["", "Ratios (ours / onmt_server): " + "; ".join(
        f"{name}: {r[name]['64']['rps'] / onmt['64']['rps']:.1f}× throughput at 64 clients, "
        f"p50 at 1 client {r[name]['1']['p50_ms']:.1f} vs {onmt['1']['p50_ms']:.1f} ms"
        for name in ("ours fp32", "ours int8")) + ".", ""]
    if r["differences"]:
        lines += ["Translations that differ from onmt_server's (fp32):", "",
                  *[f"- {d['source']!r}: {d['onmt_server']!r} vs {d['ours fp32']!r}"
                    for d in r["differences"]], ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

"""``python -m bench.engine``: the step-level batching engine against the request-level one.

Every figure is measured side by side in one run, on the shipped bundle, with both engines:
this tree and ``--baseline``, a checkout of the last commit with request-level batching
(``make bench-engine`` creates it). Writes bench/engine.json and bench/engine.md.

- decode: sentences/s without HTTP, 256 held-out UI strings alone (batch 1), in static batches
  of 64 and (new engine) 64 running at once, refilled as they finish; greedy and beam 4;
  interleaved rounds, medians;
- http: wrk closed loop on the engine issue's ten strings at beam 4, 1 and 64 clients, the naive
  PyTorch server too, and this tree with SERVICE_WORKERS=2; server-side tokens/s against the
  no-HTTP decode of the same strings at batch 64 (for two workers: two processes decoding
  batches of 32 at once, one onnxruntime thread each, as the workers run);
- mixed: six clients sending 22-40-word sentences while one sends 1-3-word strings;
- head of line: 32 texts of ~130 subwords at beam 8, then a 3-word request 0.5 s later.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from bench.measure import (
    ROOT,
    TEN,
    Proc,
    prometheus,
    rss_mib,
    start_naive,
    start_service,
    wrk,
)

WORKERS = 2  # SERVICE_WORKERS of the HTTP row below, and of its no-HTTP reference
PAIR = f"step-level (new), {WORKERS} workers"


def format_2_copy(bundle: Path, out: Path) -> Path:
    """``bundle`` as the request-level engine's build reads it (manifest format 2: no
    tokenizer, placeholders, beam rule, model family or shortlist; the same ONNX files and
    SentencePiece model), so both engines serve the same model."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    out.mkdir(parents=True, exist_ok=True)
    if manifest.get("shortlist"):
        del manifest["files"][manifest["shortlist"]["file"]]
    for name in manifest["files"]:
        (out / name).write_bytes((bundle / name).read_bytes())
    for key in ("tokenizer", "placeholders", "shortlist"):
        manifest.pop(key, None)
    for key in ("family", "details"):
        manifest["architecture"].pop(key, None)
    manifest["decoding"] = {"length_penalty": manifest["decoding"]["length_penalty"]}
    manifest["format_version"] = 2
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def decode_worker(src: Path, bundle: Path, texts_file: Path, shortlist: str) -> None:
    """In a subprocess importing ``src``'s service: one round of every decode case."""
    sys.path.insert(0, str(src))
    from service.translator import DecodeOptions, Translator

    # An older tree's Translator knows no shortlist.
    translator = Translator(bundle, shortlist=shortlist == "on") if shortlist else Translator(
        bundle)
    texts = json.loads(texts_file.read_text())
    rows, ten = translator.prepare(texts["heldout"]), translator.prepare(texts["ten"] * 7)[:64]
    out: dict[str, float] = {}
    for beam in (1, 4):
        options = DecodeOptions(beam_size=beam)
        for batch in (1, 64):
            started = time.perf_counter()
            for i in range(0, len(rows), batch):
                translator.translate_prepared(rows[i : i + batch], options)
            out[f"beam{beam} batch{batch}"] = len(rows) / (time.perf_counter() - started)
        if hasattr(translator, "translate_running"):  # step-level: 64 running, refilled
            started = time.perf_counter()
            translator.translate_running(rows, options, 64)
            out[f"beam{beam} running64"] = len(rows) / (time.perf_counter() - started)
    started = time.perf_counter()
    decoded = translator.translate_prepared(ten, DecodeOptions(beam_size=4)).translations
    tokens = sum(len(t.best.token_ids) + t.best.ended for t in decoded)
    out["ten beam4 batch64 tokens/s"] = tokens / (time.perf_counter() - started)
    print(json.dumps(out))


def pair_worker(bundle: Path, batch: int, seconds: float) -> None:
    """One of WORKERS processes decoding at once without HTTP: the ten strings at beam 4 in
    static batches of ``batch`` for ``seconds``, on one onnxruntime thread (a worker's share
    of two cores); prints tokens/s."""
    from service.runtime import SessionOptions
    from service.translator import DecodeOptions, Translator

    translator = Translator(bundle, options=SessionOptions(intra_op_threads=1))
    rows, options = translator.prepare(TEN * 7)[:batch], DecodeOptions(beam_size=4)
    translator.translate_prepared(rows, options)  # warm up
    tokens, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        decoded = translator.translate_prepared(rows, options).translations
        tokens += sum(len(t.best.token_ids) + t.best.ended for t in decoded)
    print(json.dumps(tokens / (time.perf_counter() - started)))


def bench_pair(bundle: Path, rounds: int, seconds: float = 8) -> float:
    """Tokens/s of WORKERS decoding processes at once (64 sentences between them), summed;
    median of ``rounds``."""
    totals = []
    for _ in range(rounds):
        procs = [subprocess.Popen(
            [sys.executable, "-m", "bench.engine", "--pair-worker", str(64 // WORKERS),
             "--bundle", str(bundle), "--seconds", str(seconds)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True) for _ in range(WORKERS)]
        totals.append(sum(json.loads(p.communicate()[0].strip().splitlines()[-1])
                          for p in procs))
    return statistics.median(totals)


def bench_decode(engines: dict[str, tuple[Path, str]], bundles: dict[str, Path],
                 texts_file: Path, rounds: int) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, (src, shortlist) in engines.items():
            result = subprocess.run(
                [sys.executable, "-m", "bench.engine", "--decode-worker", str(src),
                 "--bundle", str(bundles[name]), "--texts", str(texts_file),
                 "--shortlist", shortlist],
                cwd=ROOT, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(result.stdout.strip().splitlines()[-1]))
    return {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            for name, rs in runs.items()}


def post(url: str, body: dict[str, Any], timeout: float = 120) -> tuple[int, float]:
    started = time.perf_counter()
    status = httpx.post(url + "/translate", json=body, timeout=timeout).status_code
    return status, 1000 * (time.perf_counter() - started)


def bench_mixed(url: str, long_texts: list[str], short_texts: list[str], seconds: float
                ) -> dict[str, float]:
    """Six closed-loop clients with long sentences, one with short strings, beam 4."""
    latencies: dict[str, list[float]] = {"long": [], "short": []}
    errors = [0]
    stop = time.monotonic() + seconds

    def client(kind: str, texts: list[str], offset: int) -> None:
        i = offset
        while time.monotonic() < stop:
            status, ms = post(url, {"text": texts[i % len(texts)], "beam_size": 4})
            i += 1
            if status == 200:
                latencies[kind].append(ms)
            else:
                errors[0] += 1

    threads = [threading.Thread(target=client, args=("long", long_texts, 7 * n))
               for n in range(6)] + [threading.Thread(target=client,
                                                      args=("short", short_texts, 0))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    long_p50, short_p50 = (statistics.median(latencies[k]) for k in ("long", "short"))
    return {"long_p50_ms": long_p50, "short_p50_ms": short_p50,
            "short_over_long": short_p50 / long_p50, "long_requests": len(latencies["long"]),
            "short_requests": len(latencies["short"]), "errors": errors[0]}


def bench_head_of_line(url: str, heavy: list[str], small: str, rounds: int
                       ) -> dict[str, float]:
    """A 3-word request sent 0.5 s after a heavy one (long texts at beam 8), and alone."""
    small_ms, heavy_ms, statuses = [], [], []
    idle_ms = [post(url, {"text": small, "beam_size": 4})[1] for _ in range(5 * rounds)]
    with ThreadPoolExecutor(1) as pool:
        for _ in range(rounds):
            first = pool.submit(post, url, {"text": heavy, "beam_size": 8}, 300)
            time.sleep(0.5)
            status, ms = post(url, {"text": small, "beam_size": 4})
            heavy_status, heavy_time = first.result()
            small_ms.append(ms)
            heavy_ms.append(heavy_time)
            statuses += [status, heavy_status]
    return {"small_p50_ms": statistics.median(small_ms), "small_max_ms": max(small_ms),
            "small_idle_ms": statistics.median(idle_ms),
            "small_over_idle": statistics.median(small_ms) / statistics.median(idle_ms),
            "heavy_p50_ms": statistics.median(heavy_ms),
            "all_200": float(all(s == 200 for s in statuses))}


def heavy_texts(translator: Any, sources: list[str], n: int = 32, target: int = 130
                ) -> list[str]:
    """``n`` texts of about ``target`` subwords, each a run of held-out strings."""
    texts, current = [], ""
    for s in sources:
        current = f"{current} {s}".strip()
        if len(translator.prepare([current])[0].ids) >= target:
            texts.append(current)
            current = ""
            if len(texts) == n:
                break
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.engine")
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "en-de")
    parser.add_argument("--baseline", type=Path, default=ROOT / "work" / "engine-baseline",
                        help="checkout of the request-level batching engine")
    parser.add_argument("--data", type=Path, default=ROOT / "work" / "data")
    parser.add_argument("--run", type=Path, default=ROOT / "work" / "run-en-de-lo",
                        help="training run for the naive PyTorch server")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "engine.json")
    parser.add_argument("--decode-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--texts", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--shortlist", default="", help=argparse.SUPPRESS)
    parser.add_argument("--pair-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pair_worker:
        pair_worker(args.bundle, args.pair_worker, args.seconds)
        return
    if args.decode_worker:
        decode_worker(args.decode_worker, args.bundle, args.texts, args.shortlist)
        return

    from model_export.corpus import load_split
    from service.translator import Translator

    translator = Translator(args.bundle)
    heldout = [s for s, _ in load_split(args.data / "heldout.tsv")]
    words = {s: len(s.split()) for s in heldout}
    long_texts = [s for s in heldout if 22 <= words[s] <= 40]
    short_texts = [s for s in heldout if 1 <= words[s] <= 3]
    heavy = heavy_texts(translator, heldout[::-1])
    texts_file = args.out.with_suffix(".texts.json")
    texts_file.write_text(json.dumps({"heldout": heldout[:256], "ten": TEN}))
    # The new engine with the bundle's shortlist and with the whole vocabulary ("" : a tree
    # that knows no shortlist), and the old one on a copy of the bundle it can read.
    engines = {"step-level (new)": (ROOT, "on"), "step-level, whole vocabulary": (ROOT, "off"),
               "request-level (old)": (args.baseline, "")}
    bundles = {name: args.bundle for name in engines}
    bundles["request-level (old)"] = format_2_copy(args.bundle, ROOT / "work" / "bundle-format-2")
    results: dict[str, Any] = {"workload": {
        "heldout": 256, "long_texts": len(long_texts), "short_texts": len(short_texts),
        "heavy_subwords": statistics.mean(len(r.ids) for r in translator.prepare(heavy))}}

    results["decode"] = bench_decode(engines, bundles, texts_file, args.rounds)
    texts_file.unlink()
    for name, rates in results["decode"].items():
        print(f"decode {name}: {json.dumps({k: round(v, 1) for k, v in rates.items()})}",
              flush=True)
    results["decode_pair"] = bench_pair(args.bundle, args.rounds)
    print(f"decode, {WORKERS} processes at once: {results['decode_pair']:.0f} tokens/s",
          flush=True)

    bodies = [{"text": t, "beam_size": 4} for t in TEN]
    results["http"], results["mixed"], results["head_of_line"] = {}, {}, {}
    servers: dict[str, Callable[[], Proc]] = {
        name: partial(start_service, bundles[name], src,
                      **({"SERVICE_SHORTLIST": "false"} if shortlist == "off" else {}))
        for name, (src, shortlist) in engines.items()}
    servers[PAIR] = partial(start_service, args.bundle, ROOT, SERVICE_WORKERS=str(WORKERS))
    if args.run.is_dir():
        servers["naive PyTorch"] = partial(start_naive, args.run, 2)
    else:
        print(f"no training run at {args.run}: the naive PyTorch server is left out")
    for name, start in servers.items():
        proc: Proc = start()
        ready = proc.wait_for("/health" if name.startswith("naive") else "/health/ready")
        wrk(proc.url, bodies, 4, 3)  # warm up
        per_c: dict[str, Any] = {"ready_s": ready}
        for c in (1, 64):
            tokens_before = _tokens_out(proc.url, name)
            load = wrk(proc.url, bodies, c, args.seconds, proc.process.pid)
            per_c[str(c)] = {"rps": load.rps, "p50_ms": load.p50_ms, "p99_ms": load.p99_ms,
                             "errors": load.errors, "max_rss_mib": load.max_rss_mib,
                             "tokens_per_s": (_tokens_out(proc.url, name) - tokens_before)
                             / args.seconds}
            print(f"http {name} c={c}: {json.dumps(per_c[str(c)])}", flush=True)
        results["http"][name] = per_c
        if not name.startswith("naive"):
            results["mixed"][name] = bench_mixed(proc.url, long_texts, short_texts,
                                                 args.seconds)
            print(f"mixed {name}: {json.dumps(results['mixed'][name])}", flush=True)
            results["head_of_line"][name] = bench_head_of_line(proc.url, heavy, "Open the file",
                                                               args.rounds)
            print(f"head of line {name}: {json.dumps(results['head_of_line'][name])}",
                  flush=True)
            results["http"][name]["rss_after_mib"] = rss_mib(proc.process.pid)
        proc.stop()
    args.out.write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text(report(results))
    print(report(results))


def _tokens_out(url: str, name: str) -> float:
    if name.startswith("naive"):
        return float(httpx.get(url + "/stats").json()["tokens_out"])
    return prometheus(url)["translate_tokens_out_total"]


def report(r: dict[str, Any]) -> str:
    new, full = "step-level (new)", "step-level, whole vocabulary"
    old, naive = "request-level (old)", "naive PyTorch"
    d, h = r["decode"], r["http"]
    lines = ["### Decoding without HTTP (256 held-out UI strings, sentences/s, median of "
             "interleaved rounds)", "",
             "| engine, batch of 64 | greedy b1 | greedy b64 | b64/b1 | beam 4 b1 | beam 4 b64 "
             "| b64/b1 |",
             "|---|---|---|---|---|---|---|"]
    for name, batch in ((new, "running64"), (new, "batch64"), (full, "running64"),
                        (full, "batch64"), (old, "batch64")):
        cells = []
        for beam in (1, 4):
            one, many = d[name][f"beam{beam} batch1"], d[name][f"beam{beam} {batch}"]
            cells += [f"{one:.0f}", f"{many:.0f}", f"{many / one:.1f}×"]
        lines.append(f"| {name}, {batch} | " + " | ".join(cells) + " |")
    lines += ["", "### HTTP, the ten strings, beam 4 (wrk closed loop)", "",
              "| server | 1 client req/s | p50 ms | 64 clients req/s | p50 ms | p99 ms | "
              "64 / 1 | tokens/s at 64 | max RSS MiB | ready s |", "|---" * 10 + "|"]
    for name in h:
        one, many = h[name]["1"], h[name]["64"]
        lines.append(f"| {name} | {one['rps']:.1f} | {one['p50_ms']:.1f} | {many['rps']:.1f} | "
                     f"{many['p50_ms']:.0f} | {many['p99_ms']:.0f} | "
                     f"{many['rps'] / one['rps']:.2f}× | {many['tokens_per_s']:.0f} | "
                     f"{max(one['max_rss_mib'], many['max_rss_mib']):.0f} | "
                     f"{h[name]['ready_s']:.2f} |")
    rps = {name: h[name]["64"]["rps"] for name in h}
    lines += [""]
    if naive in rps:
        lines.append(f"- 64 clients, new / naive PyTorch: {rps[new] / rps[naive]:.1f}×")
    lines.append(f"- 64 clients, new / old: {rps[new] / rps[old]:.2f}×; whole vocabulary / "
                 f"old: {rps[full] / rps[old]:.2f}×")
    if PAIR in rps:
        lines.append(f"- 64 clients, {PAIR} / new: {rps[PAIR] / rps[new]:.2f}×; / old: "
                     f"{rps[PAIR] / rps[old]:.2f}×")
    for name in (new, full):
        e2e = h[name]["64"]["tokens_per_s"] / d[name]["ten beam4 batch64 tokens/s"]
        lines.append(f"- end to end at 64 clients, {name}: {h[name]['64']['tokens_per_s']:.0f} "
                     f"tokens/s = {100 * e2e:.0f} % of the no-HTTP decode of the same strings "
                     f"at batch 64 ({d[name]['ten beam4 batch64 tokens/s']:.0f} tokens/s)")
    if PAIR in h and "decode_pair" in r:
        pair = h[PAIR]["64"]["tokens_per_s"]
        lines.append(f"- end to end at 64 clients, {PAIR}: {pair:.0f} tokens/s = "
                     f"{100 * pair / r['decode_pair']:.0f} % of {WORKERS} processes decoding "
                     f"without HTTP at once, {64 // WORKERS} sentences each "
                     f"({r['decode_pair']:.0f} tokens/s), "
                     f"{100 * pair / d[new]['ten beam4 batch64 tokens/s']:.0f} % of one at batch "
                     "64")
    lines += ["", "### Mixed load and head of line (beam 4; the heavy request at beam 8)", "",
              "| engine | long p50 ms | short p50 ms | short / long | 3-word request after "
              "the heavy one, p50 ms (max) | the same alone, ms | ratio | heavy request ms "
              "| all 200 |", "|---|---|---|---|---|---|---|---|---|"]
    for name in r["mixed"]:
        m, hol = r["mixed"][name], r["head_of_line"][name]
        lines.append(f"| {name} | {m['long_p50_ms']:.0f} | {m['short_p50_ms']:.0f} | "
                     f"{m['short_over_long']:.2f} | {hol['small_p50_ms']:.0f} "
                     f"({hol['small_max_ms']:.0f}) | {hol.get('small_idle_ms', 0):.0f} | "
                     f"{hol.get('small_over_idle', 0):.1f}× | {hol['heavy_p50_ms']:.0f} | "
                     f"{'yes' if hol['all_200'] else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""``python -m bench``: every benchmark scenario, side by side in one run.

Writes bench/results.json and bench/results.md (tables quoted in BENCHMARKS.md).
Needs the data split (work/data) and, for the naive PyTorch baseline, the training run
(work/run-en-de-lo): both come from `make model`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime

from bench.measure import (
    ROOT,
    Proc,
    memory_bandwidth,
    peak_flops,
    prometheus,
    rss_mib,
    start_naive,
    start_service,
    wrk,
)
from model_export.corpus import load_split
from service.bundle import Manifest
from service.client import Client
from service.translator import DecodeOptions, Translator


def workload(bundle: Path, data: Path) -> dict[str, list[str]]:
    """Test-set sentences bucketed by source length in subword tokens."""
    translator = Translator(bundle)
    sources = [s for s, _ in load_split(data / "test.tsv")]
    lengths = {s: len(r.ids) for s, r in zip(sources, translator.prepare(sources), strict=True)}
    return {
        "short": [s for s in sources if lengths[s] <= 10][:20],
        "medium": sorted(sources, key=lambda s: abs(lengths[s] - 25))[:20],
        "long": sorted(sources, key=lambda s: -lengths[s])[:20],
        "mix": sources[:200],
    }


def decoder_cost(m: Manifest, src_len: float, weight_bytes_per_param: float
                 ) -> tuple[float, float, float]:
    """(FLOPs per generated token, decoder weight bytes, per-row state bytes) of one step."""
    a = m.architecture
    E, D, H, A, V = a.emb_dim, 2 * a.enc_hidden, a.dec_hidden, a.attn_dim, a.vocab_size
    params = 3 * H * (E + D + H) + H * A + A + (H + D + E) * E + E * V
    flops = 2 * params + src_len * (4 * A + 2 * D) + 5 * V
    return flops, params * weight_bytes_per_param, src_len * (D + A) * 4


def roofline(peak: float, bandwidth: float, cost: tuple[float, float, float], rows: int
             ) -> float:
    flops, weights, per_row = cost
    return min(peak / flops, rows * bandwidth / (weights + rows * per_row))


def bench_decode(translator: Translator, texts: list[str], batch: int, beam: int,
                 repeats: int = 3) -> float:
    """Generated tokens per second without HTTP, median of ``repeats``."""
    rows = translator.prepare((texts * (batch // len(texts) + 1))[:batch])
    options = DecodeOptions(beam_size=beam)
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = translator.translate_prepared(rows, options).translations
        seconds = time.perf_counter() - started
        rates.append(sum(len(t.best.token_ids) + 1 for t in out) / seconds)
    return statistics.median(rates)


def bench_latency(url: str, translator: Translator, texts: list[str], n: int
                  ) -> dict[str, float]:
    client = Client(url, timeout=60, retries=0)  # the project's client; a 503 counts as such
    client_ms: list[float] = []
    raw: list[float] = []
    server: dict[str, list[float]] = {"total": [], "queue": [], "encode": [], "decode": []}
    for i in range(n):
        text = texts[i % len(texts)]
        started = time.perf_counter()
        timing = client.translate(text).timing
        client_ms.append(1000 * (time.perf_counter() - started))
        for k in server:
            server[k].append(timing[f"{k}_ms"])
        started = time.perf_counter()
        translator.translate([text], DecodeOptions(beam_size=4))
        raw.append(1000 * (time.perf_counter() - started))
    return {"p50_ms": statistics.median(client_ms),
            "p99_ms": float(np.percentile(client_ms, 99)),
            "raw_decode_p50_ms": statistics.median(raw),
            **{f"server_{k}_p50_ms": statistics.median(v) for k, v in server.items()}}


def bench_throughput(systems: dict[str, Callable[[], Proc]], texts: list[str],
                     seconds: float, runs: int, concurrency: list[int]) -> dict[str, Any]:
    """Closed-loop wrk load at each concurrency, beam 4; median of ``runs`` by req/s."""
    bodies = [{"text": t, "beam_size": 4} for t in texts]
    results: dict[str, Any] = {}
    for name, start in systems.items():
        proc = start()
        proc.wait_for("/health" if name.startswith("naive") else "/health/ready")
        idle_rss = rss_mib(proc.process.pid)
        wrk(proc.url, bodies, 4, 3)  # warm up
        per_c = {}
        for c in concurrency:
            samples = []
            for _ in range(runs):
                before = _tokens(proc.url, name)
                load = wrk(proc.url, bodies, c, seconds, proc.process.pid)
                after = _tokens(proc.url, name)
                samples.append((load, {k: after[k] - before[k] for k in after}))
            mid = sorted(samples, key=lambda s: s[0].rps)[len(samples) // 2]
            load, delta = mid
            # Completed by the server in the window: wrk only counts replies it received, so a
            # server slower than the window (the naive one at 64 clients) looks slower still.
            per_c[c] = {"rps": load.rps, "server_rps": delta["sentences"] / seconds,
                        "p50_ms": load.p50_ms, "p99_ms": load.p99_ms,
                        "errors": load.errors, "tokens_per_s": delta["tokens"] / seconds,
                        "mean_batch": delta["sentences"] / delta["batches"]
                        if delta.get("batches") else 1.0, "max_rss_mib": load.max_rss_mib,
                        "rps_runs": [s[0].rps for s in samples]}
            print(f"{name:>20} c={c:<3} {load.rps:7.1f} req/s  p50 {load.p50_ms:7.1f} ms  "
                  f"p99 {load.p99_ms:7.1f} ms  batch {per_c[c]['mean_batch']:.1f}", flush=True)
        results[name] = {"idle_rss_mib": idle_rss, "concurrency": per_c}
        proc.stop()
    return results


def _tokens(url: str, name: str) -> dict[str, float]:
    if name.startswith("naive"):
        stats = httpx.get(url + "/stats").json()
        return {"tokens": stats["tokens_out"], "sentences": stats["requests"],
                "batches": stats["requests"]}
    m = prometheus(url)
    return {"tokens": m["translate_tokens_out_total"],
            "sentences": m["translate_batch_size_sum"],
            "batches": m["translate_batch_size_count"]}


def cold_start(bundle: Path, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        proc = start_service(bundle)
        times.append(proc.wait_for("/health/ready"))
        proc.stop()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "en-de")
    parser.add_argument("--full-bundle", type=Path, default=ROOT / "work" / "bundle-full",
                        help="a bundle with both fp32 and int8 (the shipped one has one variant)")
    parser.add_argument("--data", type=Path, default=ROOT / "work" / "data")
    parser.add_argument("--run", type=Path, default=ROOT / "work" / "run-en-de-lo")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--throughput-only", action="store_true",
                        help="rerun the HTTP load tests, keep the other sections of --out")
    args = parser.parse_args()
    if args.throughput_only:
        previous = json.loads(args.out.read_text())
        previous["throughput"] = bench_throughput(
            systems(args), workload(args.bundle, args.data)["mix"], args.seconds, args.runs,
            [int(c) for c in args.concurrency.split(",")])
        args.out.write_text(json.dumps(previous, indent=2))
        return

    results: dict[str, Any] = {
        "machine": {"cpu": _cpu_name(), "cores": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
                    "numpy": np.__version__}}
    texts = workload(args.bundle, args.data)
    peak, bandwidth = peak_flops(), memory_bandwidth()
    results["roofline"] = {"peak_gflops": peak / 1e9, "bandwidth_gbs": bandwidth / 1e9}
    print(f"peak {peak / 1e9:.1f} GFLOP/s, copy bandwidth {bandwidth / 1e9:.1f} GB/s", flush=True)

    full: Path = args.full_bundle
    variants = {v: full for v in ("fp32", "int8")} if full.is_dir() else {"auto": args.bundle}
    results["decode"] = {}
    for variant, bundle in variants.items():
        translator = Translator(bundle, variant)
        variant = translator.model.variant
        src_len = statistics.mean(len(r.ids) for r in translator.prepare(texts["medium"]))
        cost = decoder_cost(translator.manifest, src_len, 4.0 if variant == "fp32" else 1.0)
        for beam in (1, 4):
            for batch in (1, 8, 32, 64):
                rate = bench_decode(translator, texts["medium"], batch, beam)
                bound = roofline(peak, bandwidth, cost, batch * beam) / beam
                results["decode"][f"{variant} beam{beam} batch{batch}"] = {
                    "tokens_per_s": rate, "roofline_tokens_per_s": bound,
                    "fraction": rate / bound}
                print(f"decode {variant} beam {beam} batch {batch:>2}: {rate:8.0f} tok/s "
                      f"({100 * rate / bound:.1f}% of roofline {bound:.0f})", flush=True)

    translator = Translator(args.bundle)
    proc = start_service(args.bundle)
    proc.wait_for("/health/ready")
    results["latency"] = {k: bench_latency(proc.url, translator, texts[k], 30)
                          for k in ("short", "medium", "long")}
    for k, v in results["latency"].items():
        v["mean_tokens"] = statistics.mean(len(r.ids) for r in translator.prepare(texts[k]))
    for k, v in results["latency"].items():
        print(f"latency {k}: {v}", flush=True)
    proc.stop()
    results["cold_start_s"] = cold_start(args.bundle)
    print(f"cold start {results['cold_start_s']:.2f}s", flush=True)
    results["throughput"] = bench_throughput(systems(args), texts["mix"], args.seconds,
                                             args.runs,
                                             [int(c) for c in args.concurrency.split(",")])
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


def systems(args: argparse.Namespace) -> dict[str, Callable[[], Proc]]:
    """The servers compared under load, each started fresh by the suite."""
    found: dict[str, Callable[[], Proc]] = {
        "naive PyTorch": lambda: start_naive(args.run, 2),
        "ours, batching off": lambda: start_service(args.bundle, SERVICE_MAX_BATCH_SIZE="1"),
        "ours": lambda: start_service(args.bundle),
    }
    if args.full_bundle.is_dir():
        found["ours fp32"] = lambda: start_service(args.full_bundle, SERVICE_VARIANT="fp32")
    return found


def _cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


if __name__ == "__main__":
    main()

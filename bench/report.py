"""Render bench/results.json as the markdown tables of BENCHMARKS.md.

    python -m bench.report bench/results.json > bench/results.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def render(r: dict[str, Any]) -> str:
    m, roof = r["machine"], r["roofline"]
    out = [
        f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, onnxruntime "
        f"{m['onnxruntime']}, numpy {m['numpy']}. Measured peak {roof['peak_gflops']:.1f} "
        f"GFLOP/s (float32 GEMM), copy bandwidth {roof['bandwidth_gbs']:.1f} GB/s.",
        "",
        "### Throughput, closed loop, beam 4 (median of runs)",
        "",
        "| system | clients | req/s (wrk) | req/s (server) | tokens/s | p50 ms | p99 ms | "
        "mean batch | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, system in r["throughput"].items():
        for c, v in system["concurrency"].items():
            out.append(f"| {name} | {c} | {v['rps']:.1f} | {v.get('server_rps', 0):.1f} | "
                       f"{v['tokens_per_s']:.0f} | "
                       f"{v['p50_ms']:.0f} | {v['p99_ms']:.0f} | {v['mean_batch']:.1f} | "
                       f"{v['errors']} |")
    out += ["", "Ratios at the highest concurrency (requests completed by the server):", ""]
    top = str(max(int(c) for c in r["throughput"]["ours"]["concurrency"]))

    def rps(name: str) -> float:
        return float(r["throughput"][name]["concurrency"][top]["server_rps"])

    out.append(f"- ours / naive PyTorch: {rps('ours') / rps('naive PyTorch'):.1f}×")
    out.append(f"- ours / ours with batching off: {rps('ours') / rps('ours, batching off'):.1f}×")
    out += ["", "### Decoding without HTTP (tokens/s, fraction of the roofline)", "",
            "| variant | search | batch | tokens/s | roofline | fraction |",
            "|---|---|---|---|---|---|"]
    for key, v in r["decode"].items():
        variant, search, batch = key.split()
        out.append(f"| {variant} | {search} | {batch.removeprefix('batch')} | "
                   f"{v['tokens_per_s']:.0f} | {v['roofline_tokens_per_s']:.0f} | "
                   f"{100 * v['fraction']:.1f} % |")
    out += ["", "### Single-request latency, beam 4 (ms, p50 unless noted)", "",
            "| input | client p50 | client p99 | server total | queue | encoder | decode | "
            "raw decode (no HTTP) |", "|---|---|---|---|---|---|---|---|"]
    for k, v in r["latency"].items():
        out.append(f"| {k} ({v['mean_tokens']:.0f} tokens) | {v['p50_ms']:.1f} | "
                   f"{v['p99_ms']:.1f} | "
                   f"{v['server_total_p50_ms']:.1f} | {v['server_queue_p50_ms']:.2f} | "
                   f"{v['server_encode_p50_ms']:.2f} | {v['server_decode_p50_ms']:.1f} | "
                   f"{v['raw_decode_p50_ms']:.1f} |")
    out += ["", f"Cold start (process start → first 200 from /health/ready, median of 5): "
            f"{r['cold_start_s']:.2f} s.", "", "### Memory (RSS, MiB)", "",
            "| system | idle | peak under load |", "|---|---|---|"]
    for name, system in r["throughput"].items():
        peak = max(v["max_rss_mib"] for v in system["concurrency"].values())
        out.append(f"| {name} | {system['idle_rss_mib']:.0f} | {peak:.0f} |")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(json.loads(Path(sys.argv[1]).read_text())))

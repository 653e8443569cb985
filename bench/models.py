"""Many models, one service: does a busy model starve another? (the model repository issue)

The service serves models/ (en-de, en-fr, en-es); one decode thread steps each model's batch
in turn. Measured over HTTP, each figure a median of interleaved rounds:

- a light client (one en-fr text at a time, beam 4) alone, then while 64 clients load en-de
  with the ten strings at beam 4: its latency under load over its idle latency;
- the same light client on en-de itself under that load (one model: the light request shares
  the busy batch), for comparison;
- 32 clients on en-de and 32 on en-fr at once: each model's requests/s, and their ratio.

Writes bench/models.json and bench/models.md.

    python -m bench.models [--seconds 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from bench.measure import ROOT, TEN, start_service, wrk

LIGHT = "Export as PDF"


def light_latency(url: str, model: str, seconds: float) -> list[float]:
    """One client, one short text at a time, for ``seconds``: each request's milliseconds."""
    times = []
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=120) as client:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            response = client.post("/translate", json={"text": LIGHT, "beam_size": 4,
                                                       "model": model})
            response.raise_for_status()
            times.append(1000 * (time.perf_counter() - started))
    return times


def during(url: str, load: list[tuple[str, int]], seconds: float,
           light_model: str | None = None) -> dict[str, Any]:
    """wrk loads (model, connections) at once, and optionally the light client meanwhile."""
    results: dict[str, Any] = {}
    with ThreadPoolExecutor(len(load) + 1) as pool:
        loads = {model: pool.submit(wrk, url, [{"text": t, "beam_size": 4, "model": model}
                                               for t in TEN], connections, seconds)
                 for model, connections in load}
        if light_model is not None:
            time.sleep(1)  # the load is running
            results["light_ms"] = statistics.median(
                light_latency(url, light_model, seconds - 3))
        for model, future in loads.items():
            r = future.result()
            results[model] = {"rps": r.rps, "p50_ms": r.p50_ms, "errors": r.errors}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.models")
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    proc = start_service(None, SERVICE_MODEL_REPOSITORY=str(ROOT / "models"))
    proc.wait_for("/health/ready")
    url = proc.url
    rounds: list[dict[str, Any]] = []
    try:
        for model in ("en-de", "en-fr"):  # warm up both
            wrk(url, [{"text": t, "beam_size": 4, "model": model} for t in TEN], 4, 3)
        for round_ in range(args.rounds):
            run = {
                "fr_idle_ms": statistics.median(light_latency(url, "en-fr", args.seconds / 3)),
                "de_idle_ms": statistics.median(light_latency(url, "en-de", args.seconds / 3)),
                "fr_during_de64": during(url, [("en-de", 64)], args.seconds, "en-fr"),
                "de_during_de64": during(url, [("en-de", 64)], args.seconds, "en-de"),
                "de32_fr32": during(url, [("en-de", 32), ("en-fr", 32)], args.seconds),
            }
            print(f"round {round_}: {json.dumps(run)}", flush=True)
            rounds.append(run)
    finally:
        proc.stop()
    result = summarize(rounds, args.seconds)
    (ROOT / "bench" / "models.json").write_text(json.dumps(result, indent=1) + "\n")
    (ROOT / "bench" / "models.md").write_text(report(result))
    print(report(result))


def summarize(rounds: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    def med(f: Any) -> float:
        return statistics.median(f(r) for r in rounds)
    return {"seconds": seconds, "rounds": rounds, "median": {
        "fr_idle_ms": med(lambda r: r["fr_idle_ms"]),
        "de_idle_ms": med(lambda r: r["de_idle_ms"]),
        "fr_during_de64_ms": med(lambda r: r["fr_during_de64"]["light_ms"]),
        "fr_during_de64_ratio": med(lambda r: r["fr_during_de64"]["light_ms"] / r["fr_idle_ms"]),
        "de_during_de64_ms": med(lambda r: r["de_during_de64"]["light_ms"]),
        "de_during_de64_ratio": med(lambda r: r["de_during_de64"]["light_ms"] / r["de_idle_ms"]),
        "de64_rps": med(lambda r: r["fr_during_de64"]["en-de"]["rps"]),
        "de32_rps": med(lambda r: r["de32_fr32"]["en-de"]["rps"]),
        "fr32_rps": med(lambda r: r["de32_fr32"]["en-fr"]["rps"]),
        "fr32_over_de32": med(lambda r: r["de32_fr32"]["en-fr"]["rps"]
                              / r["de32_fr32"]["en-de"]["rps"]),
        "errors": sum(v["errors"] for r in rounds for k in ("fr_during_de64", "de_during_de64",
                                                             "de32_fr32")
                      for m, v in r[k].items() if m != "light_ms"),
    }}


def report(result: dict[str, Any]) -> str:
    m = result["median"]
    fr_loaded = f"{m['fr_during_de64_ms']:.1f} ms ({m['fr_during_de64_ratio']:.1f}× idle)"
    de_loaded = f"{m['de_during_de64_ms']:.1f} ms ({m['de_during_de64_ratio']:.1f}× idle)"
    return f"""# Many models, one service

`python -m bench.models` (models/: en-de, en-fr, en-es served at once; beam 4; medians of
{len(result['rounds'])} interleaved rounds of {result['seconds']:g} s; one light client sends
"{LIGHT}" one request at a time).

| | en-fr light client | en-de light client |
|---|---|---|
| idle | {m['fr_idle_ms']:.1f} ms | {m['de_idle_ms']:.1f} ms |
| while 64 clients load en-de ({m['de64_rps']:.0f} req/s) | {fr_loaded} | {de_loaded} |

32 clients on en-de and 32 on en-fr at once: en-de {m['de32_rps']:.0f} req/s, en-fr
{m['fr32_rps']:.0f} req/s (en-fr / en-de = {m['fr32_over_de32']:.2f}). Non-2xx answers:
{m['errors']}.
"""


if __name__ == "__main__":
    main()

"""``python -m bench.footprint``: what a pod needs, measured on real server processes.

Starts the service ``--runs`` times with the default bundle and reports the time from
process start to the first 200 from ``/health/ready``, and the peak RSS while 32 clients
send 8 long texts each at beam 8 (96 requests). deploy/kubernetes sizes its startup probe
and memory request from these figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench.measure import ROOT, rss_mib
from service.client import Client

TEXT = ("Select the cells that contain the values you want to sort, then choose Sort on the "
        "Data menu.")


def one_run(port: int) -> tuple[float, float]:
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=ROOT,
                               env={**os.environ, "SERVICE_PORT": str(port)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Client(f"http://127.0.0.1:{port}", retries=0)
    try:
        while not client.ready():
            time.sleep(0.02)
        ready = time.monotonic() - started
        peak = rss_mib(process.pid)
        with ThreadPoolExecutor(32) as pool:
            futures = [pool.submit(client.translate, [TEXT] * 8, beam_size=8)
                       for _ in range(96)]
            while not all(f.done() for f in futures):
                peak = max(peak, rss_mib(process.pid))
                time.sleep(0.05)
            for f in futures:
                f.result()
        return ready, peak
    finally:
        client.close()
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.footprint")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--port", type=int, default=8800)
    args = parser.parse_args()
    results = [one_run(args.port + i) for i in range(args.runs)]
    print(f"ready: median {statistics.median(r for r, _ in results):.2f} s "
          f"({', '.join(f'{r:.2f}' for r, _ in results)})")
    print(f"peak RSS under 32 clients x 8 texts at beam 8: "
          f"{max(p for _, p in results):.0f} MiB")


if __name__ == "__main__":
    main()

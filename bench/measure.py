"""Measuring tools: servers as subprocesses, wrk load, RSS, the machine's roofline."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# The ten UI strings of the engine issue's HTTP benchmark.
TEN = ["Open the file", "Save changes to the document before closing?",
       "Insert %1 rows above the selected cell",
       "The file could not be opened because it is in use by another program.",
       "Delete the selected sheet permanently",
       "Select the cells that contain the values you want to sort, then choose Sort on the "
       "Data menu.", "Show hidden characters", "Export as PDF",
       "The macro could not be found in the library %s.",
       "Automatically check spelling while typing"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its children (a supervisor's workers)."""
    total = float("nan")
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total = int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(FileNotFoundError):  # it has just exited
                total += rss_mib(int(child))
    return total


@dataclass
class Proc:
    url: str
    process: subprocess.Popen[bytes]
    started: float  # perf_counter at spawn

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()

    def wait_for(self, path: str, timeout: float = 120.0) -> float:
        """Seconds from spawn until ``path`` answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.url}: exited with {self.process.returncode}")
            try:
                if httpx.get(self.url + path, timeout=1).status_code == 200:
                    return time.perf_counter() - self.started
            except httpx.TransportError:
                pass
            time.sleep(0.005)
        raise TimeoutError(f"{self.url}{path} not ready")


def start_service(bundle: Path | None, src: Path = ROOT, **env: str) -> Proc:
    """The service of the source tree ``src`` (another checkout: an older engine), serving
    ``bundle`` (None: its model repository)."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if k != "SERVICE_BUNDLE_DIR"}
    if bundle is not None:
        environ["SERVICE_BUNDLE_DIR"] = str(bundle)
    environ |= {"SERVICE_PORT": str(port), "SERVICE_LOG_LEVEL": "warning",
                "PYTHONPATH": str(src), **env}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "service"], cwd=src, env=environ,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Proc(f"http://127.0.0.1:{port}", process, started)


def start_naive(run_dir: Path, threads: int) -> Proc:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.naive_server", "--run", str(run_dir), "--port", str(port),
         "--threads", str(threads)], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    return Proc(f"http://127.0.0.1:{port}", process, started)


LUA = """
local bodies = {%s}
local i = 0
request = function()
  i = i %% #bodies + 1
  return wrk.format("POST", "%s", {["Content-Type"] = "application/json"}, bodies[i])
end
"""
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    max_rss_mib: float


def wrk(url: str, bodies: Sequence[object], connections: int, seconds: float,
        pid: int | None = None, path: str = "/translate") -> LoadResult:
    """Closed-loop load: ``connections`` clients, each sending its next request on reply."""
    # Lua long brackets hold UTF-8 JSON verbatim (Lua knows no \uXXXX escapes).
    script = LUA % (", ".join(f"[==[{json.dumps(b, ensure_ascii=False)}]==]" for b in bodies),
                    path)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False, encoding="utf-8") as f:
        f.write(script)
    threads = min(2, connections)
    proc = subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{round(seconds)}s", "--latency",
         "--timeout", "60s", "-s", f.name, url], stdout=subprocess.PIPE, text=True)
    max_rss = 0.0
    while proc.poll() is None:
        if pid is not None:
            max_rss = max(max_rss, rss_mib(pid))
        time.sleep(0.2)
    out = proc.stdout.read() if proc.stdout else ""
    os.unlink(f.name)

    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket_errors = re.search(r"Socket errors:.*?timeout (\d+)", out)
    return LoadResult(float(rps.group(1)) if rps else 0.0, latency("50"), latency("99"),
                      (int(errors.group(1)) if errors else 0)
                      + (int(socket_errors.group(1)) if socket_errors else 0), max_rss)


def prometheus(url: str) -> dict[str, float]:
    """Each metric of a /metrics page, its samples summed over their labels (the service
    labels per-model metrics with the model and version)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    totals: dict[str, float] = {}
    for m in re.finditer(r"^([a-z_]+)(?:\{[^}]*\})? ([0-9.e+-]+)$", text, re.MULTILINE):
        totals[m.group(1)] = totals.get(m.group(1), 0.0) + float(m.group(2))
    return totals


def peak_flops(seconds: float = 2.0, n: int = 1024) -> float:
    """Sustained float32 GEMM rate of numpy's BLAS on all cores (FLOP/s)."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = a.copy()
    a @ b  # warm up
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        runs += 1
    return 2 * n**3 * runs / (time.perf_counter() - started)


def memory_bandwidth(mib: int = 512, repeats: int = 5) -> float:
    """Copy bandwidth (bytes read + written per second) of a large buffer."""
    src = np.ones(mib * 1024 * 1024 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - started)
    return 2 * src.nbytes / statistics.median(times)

"""``SERVICE_WORKERS`` > 1: several server processes on one port, and their supervisor.

One service process steps its running batch in one decode thread. Its Python parts share one
GIL with the HTTP event loop, and onnxruntime's threads keep few cores busy in a decoder step
this small, so on a 2-core host a quarter of the CPU idles at full load (BENCHMARKS run 15).
N workers, each a whole service (its own models, batcher, decode thread, and onnxruntime
threads: cores / N unless ``SERVICE_INTRA_OP_THREADS`` says), bind the same port with
SO_REUSEPORT and the kernel spreads connections over them, as gunicorn's and uvicorn's workers
do. The supervisor starts them, forwards SIGTERM/SIGINT once so each drains as a lone service
does, and restarts a worker that dies or hangs (its event loop touches a heartbeat file every
second; one silent for ``SERVICE_WORKER_TIMEOUT_S`` is killed, as gunicorn's ``--timeout``
does). The workers share one prometheus_client multiprocess directory, so ``/metrics``,
whichever worker answers, sums them all; each marks itself ready there too, and
``/health/ready``, whichever worker answers, says ready only when every worker is.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from prometheus_client import multiprocess

from service.settings import Settings

log = logging.getLogger("service.workers")

WORKER = "SERVICE_WORKER_INDEX"  # in a worker's environment: serve, do not supervise
METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's multiprocess mode
MIN_UPTIME_S = 10.0  # a worker that exits with an error sooner failed to start: stop
_PR_SET_PDEATHSIG = 1


def worker_index() -> int | None:
    """This process's worker number, or None outside a supervisor's workers."""
    index = os.environ.get(WORKER)
    return int(index) if index is not None else None


def _file(kind: str, index: int) -> Path:
    """A worker's mark in the supervisor's directory: ``ready`` while it serves, ``alive``
    touched by its event loop every second."""
    return Path(os.environ[METRICS_DIR]) / f"{kind}-{index}"


def heartbeat() -> None:
    """In a worker's event loop, every second: this worker is alive (a no-op outside)."""
    index = worker_index()
    if index is not None:
        _file("alive", index).touch()


def mark_ready(ready: bool) -> None:
    """In a worker: tell the others whether this one serves (a no-op outside workers)."""
    index = worker_index()
    if index is not None:
        if ready:
            _file("ready", index).touch()
        else:
            _file("ready", index).unlink(missing_ok=True)


def unready_workers(count: int) -> list[int]:
    """Which of ``count`` workers (SERVICE_WORKERS) do not serve now (none outside a
    supervisor's workers)."""
    if worker_index() is None:
        return []
    return [i for i in range(count) if not _file("ready", i).exists()]


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT: each worker binds its own and the
    kernel balances new connections between them (uvicorn listens on it)."""
    family, kind, _, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    return sock


def _die_with_parent() -> None:  # in the child, before exec: SIGTERM if the supervisor dies
    prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)  # Linux only
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[bytes]
    started: float  # time.time(), as the heartbeat files' times are


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers: list[Worker] = []
        self.stopping = False
        self.signal: int | None = None  # received, not forwarded yet
        self.env = dict(os.environ)
        if not settings.intra_op_threads:  # share the cores out
            cores = len(os.sched_getaffinity(0))
            self.env["SERVICE_INTRA_OP_THREADS"] = str(max(1, cores // settings.workers))

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT and every worker has drained; the exit status is 0,
        or a worker's that failed to start."""
        metrics_dir = tempfile.mkdtemp(prefix="service-metrics-")
        os.environ[METRICS_DIR] = self.env[METRICS_DIR] = metrics_dir
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._received)
        log.info("starting %d workers on %s:%d, %s onnxruntime threads each",
                 self.settings.workers, self.settings.host, self.settings.port,
                 self.env.get("SERVICE_INTRA_OP_THREADS", "default"))
        status = 0
        try:
            self.workers = [self._start(i) for i in range(self.settings.workers)]
            while self.workers:
                self._forward()
                time.sleep(0.1)
                for worker in [w for w in self.workers if w.process.poll() is not None]:
                    status = self._exited(worker) or status
                for worker in self.workers:
                    self._kill_if_hung(worker)
        finally:
            for worker in self.workers:  # left only by an exception here: stop them
                worker.process.terminate()
                worker.process.wait()
            shutil.rmtree(metrics_dir, ignore_errors=True)
        return status

    def _start(self, index: int) -> Worker:
        process = subprocess.Popen([sys.executable, "-m", "service"],
                                   env=self.env | {WORKER: str(index)},
                                   start_new_session=True, preexec_fn=_die_with_parent)
        return Worker(index, process, time.time())

    def _kill_if_hung(self, worker: Worker) -> None:
        """SIGKILL a worker whose event loop, once serving, has not touched its heartbeat
        file for SERVICE_WORKER_TIMEOUT_S; the loop then starts it again. (It beats from
        when it listens, after its models have loaded, however long that takes.)"""
        beat = _file("alive", worker.index)
        last = beat.stat().st_mtime if beat.exists() else 0.0
        if last < worker.started:  # not yet (a killed one's file may be left)
            return
        timeout = self.settings.worker_timeout_s
        if not self.stopping and time.time() - last > timeout:
            log.error("worker %d has not answered for %gs (SERVICE_WORKER_TIMEOUT_S): "
                      "killing it", worker.index, timeout)
            worker.process.kill()
            worker.process.wait()
            _file("ready", worker.index).unlink(missing_ok=True)  # before the next scrape

    def _exited(self, worker: Worker) -> int:
        """Forget or replace a worker that has exited; non-zero if the service must stop."""
        code = worker.process.returncode
        multiprocess.mark_process_dead(worker.process.pid)
        _file("ready", worker.index).unlink(missing_ok=True)  # if it was killed
        self.workers.remove(worker)
        if self.stopping:
            # uvicorn re-raises the signal it drained on: that is a clean exit
            return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
        if code > 0 and time.time() - worker.started < MIN_UPTIME_S:  # not a kill
            log.error("worker %d exited with status %d within %gs of starting: stopping",
                      worker.index, code, MIN_UPTIME_S)
            self.stopping = True
            for other in self.workers:
                other.process.send_signal(signal.SIGTERM)
            return code or 1
        log.error("worker %d exited with status %d: starting it again", worker.index, code)
        self.workers.append(self._start(worker.index))
        return 0

    def _received(self, sig: int, frame: FrameType | None) -> None:
        self.stopping, self.signal = True, sig

    def _forward(self) -> None:
        """Each worker gets each signal once (they run in sessions of their own, out of the
        terminal's reach): the first drains, a second skips SERVICE_SHUTDOWN_DELAY_S."""
        if self.signal is not None:
            for worker in self.workers:
                worker.process.send_signal(self.signal)
            self.signal = None

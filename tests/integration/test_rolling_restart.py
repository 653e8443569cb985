"""A rolling update behind a load balancer loses no request (deploy/kubernetes, proven here).

Two replicas of the real service run behind Debian's HAProxy configured the way a Kubernetes
Service behaves for this test: no retries of sent requests, health checks on
``/health/ready``. Each replica is replaced the way the Deployment does it (maxSurge 1,
maxUnavailable 0): a new replica starts and joins when ready; then the old one is removed
from the balancer ``ENDPOINT_LAG_S`` after it starts terminating, while its ``preStop`` sleep
(read from the manifest) runs, and only then gets SIGTERM and drains. Eight clients keep
sending requests throughout; every one must succeed.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.conftest import Server, free_port, start_server

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
if not Path(HAPROXY).is_file():
    pytest.skip("haproxy is missing: make tools installs Debian's haproxy (it needs root)",
                allow_module_level=True)

DEPLOYMENT = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "base" / "deployment.yaml")
                            .read_text())
CONTAINER = DEPLOYMENT["spec"]["template"]["spec"]["containers"][0]
PRESTOP_S = float(CONTAINER["lifecycle"]["preStop"]["exec"]["command"][-1])
GRACE_S = float(DEPLOYMENT["spec"]["template"]["spec"]["terminationGracePeriodSeconds"])
ENDPOINT_LAG_S = 1.0  # endpoint removal reaching the proxies, after the pod starts terminating
SLOTS = 3  # balancer entries: two replicas plus the surge one

CONFIG = """
global
    stats socket {socket} mode 600 level admin
defaults
    mode http
    retries 0
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend service
    bind 127.0.0.1:{port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET /health/ready
    default-server inter 300ms fall 1 rise 1
{servers}
"""


class Balancer:
    def __init__(self, tmp: Path, ports: list[int]) -> None:
        self.socket_path = tmp / "haproxy.sock"
        self.port = free_port()
        # A slot without a replica yet (port 0) waits disabled for the surge one.
        servers = "\n".join(f"    server r{i} 127.0.0.1:{p or 1} check" + ("" if p else
                                                                         " disabled")
                            for i, p in enumerate(ports))
        config = tmp / "haproxy.cfg"
        config.write_text(CONFIG.format(socket=self.socket_path, port=self.port,
                                        servers=servers))
        self.process = subprocess.Popen([HAPROXY, "-f", str(config), "-db"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while not self.socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            received = b""
            while chunk := sock.recv(65536):  # the socket closes after one command
                received += chunk
            return received.decode()

    def add(self, slot: int, port: int) -> None:
        self.command(f"set server replicas/r{slot} addr 127.0.0.1 port {port}")
        self.command(f"set server replicas/r{slot} state ready")

    def remove(self, slot: int) -> None:
        self.command(f"set server replicas/r{slot} state maint")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def test_rolling_restart_behind_a_balancer_loses_nothing(tmp_path: Path) -> None:
    replicas: dict[int, Server] = {}
    for slot in (0, 1):
        (tmp_path / f"r{slot}").mkdir()
        replicas[slot] = start_server(tmp_path / f"r{slot}")
    for server in replicas.values():
        server.wait("/health/ready", 200)
    ports = [int(replicas[0].url.rsplit(":", 1)[1]), int(replicas[1].url.rsplit(":", 1)[1]), 0]
    balancer = Balancer(tmp_path, ports)
    stop = threading.Event()
    outcomes: list[int | str] = []

    def client() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                try:
                    r = http.post(balancer.url + "/translate",
                                  json={"text": "Open the file", "beam_size": 1})
                    outcomes.append(r.status_code)
                except httpx.HTTPError as exc:
                    outcomes.append(type(exc).__name__)

    clients = [threading.Thread(target=client) for _ in range(8)]
    try:
        for client_thread in clients:
            client_thread.start()
        deadline = time.monotonic() + 30
        while len(outcomes) < 20 and time.monotonic() < deadline:  # traffic flows
            time.sleep(0.05)
        free = 2
        for old in (0, 1):
            surge_dir = tmp_path / f"surge{old}"
            surge_dir.mkdir()
            new = start_server(surge_dir)
            new.wait("/health/ready", 200)
            balancer.add(free, int(new.url.rsplit(":", 1)[1]))
            time.sleep(1)  # health checks see it ready
            # The old pod starts terminating: its endpoint removal propagates while preStop
            # runs; SIGTERM follows preStop, whichever comes first.
            removal = threading.Timer(ENDPOINT_LAG_S, balancer.remove, (old,))
            removal.start()
            time.sleep(PRESTOP_S)
            replicas[old].process.send_signal(signal.SIGTERM)
            assert replicas[old].process.wait(timeout=GRACE_S) in (0, -signal.SIGTERM)
            removal.join()
            replicas[free], free = new, old
        time.sleep(1)
    finally:
        stop.set()
        for client_thread in clients:
            if client_thread.is_alive():
                client_thread.join(timeout=60)
        balancer.stop()
        for server in replicas.values():
            server.stop()
    failures = [o for o in outcomes if o != 200]
    print(f"rolling restart: {len(outcomes)} requests, {len(failures)} failed")  # pytest -s
    assert len(outcomes) > 50 and not failures, (len(outcomes), failures[:10])

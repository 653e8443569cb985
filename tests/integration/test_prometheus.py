"""The provisioned Grafana dashboard and the shipped rules, evaluated by a real Prometheus
(Debian's ``prometheus``) scraping a real server under load every second.

Every dashboard query (Grafana's variables replaced by concrete values) and every rule
expression must return data. An alert expression is checked twice: without its comparison
(the series it watches exists and has a value) and whole (a healthy server under load does
not fire it). Stopping the server must then make TranslateTargetDown pending. Grafana itself
is not run (it is not packaged in Debian).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import ROOT
from tests.integration.conftest import Server, free_port, start_server

DOCKER = ROOT / "docker"
RULES = DOCKER / "prometheus-rules.yml"
DASHBOARD = DOCKER / "grafana" / "dashboards" / "translate.json"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool")
SCRAPE_S = 1
# Grafana's values for a 1 s scrape: $__rate_interval is at least four scrape intervals.
GRAFANA_VARS = {"__rate_interval": "10s", "__interval": "2s", "__range": "5m"}
COMPARISON = re.compile(r"^(?P<lhs>.+?)\s*(?P<op>==|!=|>=|<=|>|<)\s*(?P<rhs>[-\d.e]+)$", re.S)

needs_prometheus = pytest.mark.skipif(
    not (Path(PROMETHEUS).is_file() and PROMTOOL),
    reason="prometheus/promtool not installed (Debian package prometheus: `make tools`)")


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"]
            for rule in group["rules"]]


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title / refId, expression) of every target."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(f"{panel['title']} / {target['refId']}", target["expr"])
            for panel in dashboard["panels"] for target in panel["targets"]]


def substitute(expr: str, variables: dict[str, str]) -> str:
    """Grafana's ``$name`` and ``${name}`` replaced by concrete values."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def test_compose_mounts_every_rule_file_next_to_the_config() -> None:
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    volumes = compose["services"]["prometheus"]["volumes"]
    assert config["rule_files"] == ["prometheus-rules.yml"]
    for name in config["rule_files"]:  # relative to the config: /etc/prometheus/ in compose
        assert f"./{name}:/etc/prometheus/{name}:ro" in volumes
        assert (DOCKER / name).is_file()


@needs_prometheus
def test_promtool_accepts_the_config_and_the_rules() -> None:
    assert PROMTOOL
    for args in (["check", "config", str(DOCKER / "prometheus.yml")],
                 ["check", "rules", str(RULES)]):
        done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr


@dataclass
class Stack:
    server: Server
    url: str  # Prometheus
    instance: str  # the server's instance label

    def query(self, expr: str) -> list[dict[str, Any]]:
        response = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        assert body.get("status") == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def eventually(self, expr: str, ok: Callable[[list[dict[str, Any]]], bool],
                   timeout: float = 30) -> list[dict[str, Any]]:
        """The result of ``expr`` once ``ok`` holds (windows fill over the first seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if ok(result) or time.monotonic() > deadline:
                return result
            time.sleep(0.5)


def has_values(result: list[dict[str, Any]]) -> bool:
    """Non-empty, and every value a number (not NaN: a quantile of no observations)."""
    return bool(result) and all(math.isfinite(float(r["value"][1])) for r in result)


def load(url: str, stop: threading.Event) -> None:
    """Translations, and a few 4xx: 422 (a string beam size), 413 (65 texts), 404."""
    with httpx.Client(base_url=url, timeout=30) as client:
        while not stop.is_set():
            try:
                client.post("/translate", json={"text": ["Open the file", "Save as %s"],
                                                "beam_size": 2})
                client.post("/translate", json={"text": "Close", "beam_size": "4"})
                client.post("/translate", json={"text": ["a"] * 65})
                client.get("/no-such-page")
            except httpx.TransportError:
                time.sleep(0.2)  # the server is being stopped


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not (Path(PROMETHEUS).is_file() and PROMTOOL):
        pytest.skip("prometheus/promtool not installed (Debian package prometheus: "
                    "`make tools`)")
    tmp = tmp_path_factory.mktemp("prometheus")
    server = start_server(tmp)
    server.wait("/health/ready", 200)
    instance = server.url.removeprefix("http://")
    config = {"global": {"scrape_interval": f"{SCRAPE_S}s",
                         "evaluation_interval": f"{SCRAPE_S}s"},
              "rule_files": [str(RULES)],
              "scrape_configs": [{"job_name": "translate",
                                  "static_configs": [{"targets": [instance]}]}]}
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    stop = threading.Event()
    loader = threading.Thread(target=load, args=(server.url, stop), daemon=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not _ready(url):
            assert prometheus.poll() is None and time.monotonic() < deadline, (
                (tmp / "prometheus.log").read_text())
            time.sleep(0.2)
        loader.start()
        yield Stack(server, url, instance)
    finally:
        stop.set()
        prometheus.terminate()
        prometheus.wait(timeout=30)
        log.close()
        server.stop()
        loader.join(timeout=30)


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/-/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_the_rules_are_loaded_and_evaluate_without_errors(stack: Stack) -> None:
    stack.eventually("up", bool)
    time.sleep(2 * SCRAPE_S)  # a few evaluations
    groups = httpx.get(stack.url + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == {r.get("record") or r["alert"] for r in rules()}
    for name, rule in loaded.items():
        assert rule["health"] == "ok", (name, rule.get("lastError"))


def test_every_dashboard_query_returns_data(stack: Stack) -> None:
    # the dashboard's instance variable: label_values(translate_ready, instance)
    stack.eventually("translate_ready", bool)
    instances = httpx.get(stack.url + "/api/v1/label/instance/values",
                          params={"match[]": "translate_ready"}, timeout=10).json()["data"]
    assert instances == [stack.instance]
    # and its model variable: label_values(translate_model_ready, model)
    models = httpx.get(stack.url + "/api/v1/label/model/values",
                       params={"match[]": "translate_model_ready"}, timeout=10).json()["data"]
    assert models == ["en-de"]
    empty = []
    # "All" (its allValue), then the one instance and model, regex-escaped inside a PromQL
    # string as Grafana does it for a multi-value variable
    for instance, model in ((".*", ".*"), (re.escape(stack.instance).replace("\\", "\\\\"),
                                           "en-de")):
        for name, expr in dashboard_queries():
            query = substitute(expr, {**GRAFANA_VARS, "instance": instance, "model": model})
            result = stack.eventually(query, has_values)
            if not has_values(result):
                empty.append(f"{name}: {query} -> {result}")
    assert not empty, "\n".join(empty)


def test_every_recording_rule_records_data(stack: Stack) -> None:
    for rule in rules():
        if "record" in rule:
            assert has_values(stack.eventually(rule["expr"], has_values)), rule["expr"]
            assert has_values(stack.eventually(rule["record"], has_values)), rule["record"]


def test_every_alert_watches_existing_series_and_is_quiet_on_a_healthy_server(
        stack: Stack) -> None:
    for rule in rules():
        if "alert" not in rule:
            continue
        match = COMPARISON.match(rule["expr"].strip())
        assert match, f"{rule['alert']}: expected '<expression> <op> <threshold>'"
        watched = stack.eventually(match["lhs"], has_values)
        assert has_values(watched), f"{rule['alert']}: {match['lhs']} has no data"
        assert stack.query(rule["expr"]) == [], f"{rule['alert']} would fire: {watched}"
    firing = httpx.get(stack.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    assert firing == []


def test_target_down_goes_pending_when_the_service_stops(stack: Stack) -> None:
    stack.server.stop()
    deadline = time.monotonic() + 30
    states: dict[str, str] = {}
    while time.monotonic() < deadline and "TranslateTargetDown" not in states:
        alerts = httpx.get(stack.url + "/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        states = {a["labels"]["alertname"]: a["state"] for a in alerts}
        time.sleep(0.5)
    assert states.get("TranslateTargetDown") == "pending", states  # `for: 1m` not yet over

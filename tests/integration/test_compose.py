"""docker/: compose, Dockerfiles, Prometheus and Grafana agree with the code, and the image's
entry point, run with the image's environment, serves translations.

No container engine is needed: the final stage of each Dockerfile is parsed, and its command runs
here with the repository's venv standing in for the image's. ``make docker-check`` builds and runs
the real image.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from service.metrics import Metrics
from service.settings import Settings
from tests.conftest import ROOT
from tests.integration.conftest import Server, free_port

DOCKER = ROOT / "docker"
SETTINGS_ENV = {f"SERVICE_{name.upper()}" for name in Settings.model_fields}
SUFFIXES = {"counter": ["_total"], "gauge": [""], "info": ["_info"],
            "histogram": ["_bucket", "_sum", "_count"]}
EXPORTED = {family.name + suffix for family in Metrics().registry.collect()
            for suffix in SUFFIXES[family.type]}


@dataclass
class Stage:
    """The final stage of a Dockerfile: what ``docker run`` starts."""

    env: dict[str, str] = field(default_factory=dict)
    copies: dict[str, str] = field(default_factory=dict)  # image path -> build-context path
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    user: str = "root"
    exposed: list[int] = field(default_factory=list)


def instructions(path: Path) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuation lines joined."""
    result, pending = [], ""
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, args = pending.strip().partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def exec_form(keyword: str, args: str) -> list[str]:
    """A JSON array; shell form would make /bin/sh PID 1 and swallow SIGTERM."""
    try:
        command = json.loads(args)
    except json.JSONDecodeError:
        command = None
    if not isinstance(command, list):
        raise ValueError(f"{keyword} {args}: use the exec form, a JSON array of strings")
    return command


def final_stage(path: Path) -> Stage:
    steps = instructions(path)
    start = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    stage = Stage()
    for keyword, args in steps[start + 1:]:
        if keyword == "ENV":
            stage.env.update(pair.split("=", 1) for pair in shlex.split(args))  # type: ignore[misc]
        elif keyword == "COPY" and not args.startswith("--from"):
            source, dest = shlex.split(args)
            stage.copies[dest] = source
        elif keyword == "ENTRYPOINT":
            stage.entrypoint = exec_form(keyword, args)
        elif keyword == "CMD":
            stage.cmd = exec_form(keyword, args)
        elif keyword == "HEALTHCHECK":
            stage.healthcheck = exec_form(keyword, args.split(" CMD ", 1)[1])
        elif keyword == "USER":
            stage.user = args
        elif keyword == "EXPOSE":
            stage.exposed += [int(port.split("/")[0]) for port in args.split()]
    return stage


COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
IMAGES = {"translate": final_stage(DOCKER / "Dockerfile"),
          "translate-gpu": final_stage(DOCKER / "Dockerfile.cuda")}


def environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    pairs = raw.items() if isinstance(raw, dict) else (item.split("=", 1) for item in raw)
    return {key: str(value) for key, value in pairs}


def container_port(service: dict[str, Any]) -> int:
    return int(str(service["ports"][0]).split(":")[-1].split("/")[0])


def dashboard_metrics() -> tuple[list[str], set[str]]:
    """The dashboard's PromQL expressions and the metric names they use."""
    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "translate.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return exprs, set(re.findall(r"\btranslate_\w+", " ".join(exprs)))


def volume_target(service: dict[str, Any], source: str) -> str:
    [target] = [v.split(":")[1] for v in service["volumes"] if v.split(":")[0] == source]
    return target


def test_compose_runs_each_image_with_health_restart_and_limits() -> None:
    assert set(SERVICES) == {"translate", "translate-gpu", "prometheus", "grafana"}
    assert "profiles" not in SERVICES["translate"]
    assert SERVICES["translate-gpu"]["profiles"] == ["gpu"]
    published = [str(p).split(":")[0] for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(published) == len(set(published)), f"host ports clash: {published}"
    for name, stage in IMAGES.items():
        service = SERVICES[name]
        build = service["build"]
        assert (DOCKER / build["context"] / build["dockerfile"]).is_file()
        assert container_port(service) == int(stage.env["SERVICE_PORT"])
        assert int(stage.env["SERVICE_PORT"]) in stage.exposed
        assert stage.env["SERVICE_HOST"] == "0.0.0.0"
        assert service["healthcheck"]["test"] == ["CMD", *stage.healthcheck]
        assert stage.healthcheck and stage.entrypoint
        assert stage.user.split(":")[0] not in {"root", "0"}
        assert service["restart"] in {"always", "unless-stopped", "on-failure"}
        limits = service["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and limits["memory"]
        env = {**stage.env, **environment(service)}
        # onnxruntime sizes its pool by the host's cores; more threads than the limit thrash
        workers = int(env.get("SERVICE_WORKERS", 1))
        assert 0 < workers * int(env["SERVICE_INTRA_OP_THREADS"]) <= float(limits["cpus"])
        # the engine's SIGKILL must not cut the drain short
        drain = float(env.get("SERVICE_SHUTDOWN_TIMEOUT_S",
                              Settings.model_fields["shutdown_timeout_s"].default))
        assert re.fullmatch(r"\d+s", service["stop_grace_period"])
        assert int(service["stop_grace_period"][:-1]) > drain
    [gpu] = SERVICES["translate-gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]
    assert IMAGES["translate-gpu"].env["SERVICE_PROVIDER"] == "auto"


def test_every_service_variable_is_a_setting_with_a_valid_value() -> None:
    sources = {f"{name} image": stage.env for name, stage in IMAGES.items()}
    sources |= {f"compose {name}": environment(SERVICES[name]) for name in IMAGES}
    for source, env in sources.items():
        names = {key for key in env if key.startswith("SERVICE_")}
        assert names <= SETTINGS_ENV, (f"{source}: unknown {sorted(names - SETTINGS_ENV)}; "
                                       f"valid are {sorted(SETTINGS_ENV)}")
        Settings.model_validate({key.removeprefix("SERVICE_").lower(): env[key] for key in names})


def test_prometheus_scrapes_each_service_metrics_endpoint() -> None:
    prometheus = SERVICES["prometheus"]
    config_path = volume_target(prometheus, "./prometheus.yml")
    assert f"--config.file={config_path}" in prometheus["command"]
    config = yaml.safe_load((DOCKER / "prometheus.yml").read_text())
    targets = {target for job in config["scrape_configs"]
               if job.get("metrics_path", "/metrics") == "/metrics"
               for group in job["static_configs"] for target in group["targets"]}
    assert {f"{name}:{container_port(SERVICES[name])}" for name in IMAGES} <= targets


def test_grafana_provisions_the_datasource_and_dashboard() -> None:
    grafana = SERVICES["grafana"]
    provisioning = DOCKER / "grafana" / "provisioning"
    assert volume_target(grafana, "./grafana/provisioning") == "/etc/grafana/provisioning"
    [datasource] = yaml.safe_load(
        (provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasource["url"] == f"http://prometheus:{container_port(SERVICES['prometheus'])}"
    [provider] = yaml.safe_load(
        (provisioning / "dashboards" / "translate.yml").read_text())["providers"]
    assert provider["options"]["path"] == volume_target(grafana, "./grafana/dashboards")

    dashboard = json.loads((DOCKER / "grafana" / "dashboards" / "translate.json").read_text())
    exprs, used = dashboard_metrics()
    assert all(panel["datasource"]["uid"] == datasource["uid"] for panel in dashboard["panels"])
    assert all(panel["targets"] for panel in dashboard["panels"])
    assert used <= EXPORTED, f"not exported: {sorted(used - EXPORTED)}"
    for required in ("translate_http_requests_total", "translate_http_request_seconds_bucket",
                     "translate_batch_size_bucket", "translate_tokens_out_total",
                     "translate_queue_wait_seconds_bucket", "translate_http_in_flight"):
        assert required in used
    assert any("histogram_quantile(0.99" in expr for expr in exprs)


def run_probe(stage: Stage, env: dict[str, str]) -> int:
    command = [str(ROOT / stage.copies.get(arg, arg)) if arg in stage.copies else arg
               for arg in stage.healthcheck]
    command[0] = shutil.which(command[0], path=env["PATH"]) or command[0]
    return subprocess.run(command, env=env, capture_output=True, timeout=30).returncode


def test_the_image_entry_point_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    stage = IMAGES["translate"]
    env = {**stage.env, **environment(SERVICES["translate"])}
    # The baked repository (whatever COPY put at SERVICE_MODEL_REPOSITORY), this venv for
    # /opt/venv/bin.
    repository = env["SERVICE_MODEL_REPOSITORY"]
    assert repository in stage.copies, (f"SERVICE_MODEL_REPOSITORY={repository} is not where "
                                        "COPY put the models")
    env["SERVICE_MODEL_REPOSITORY"] = str(ROOT / stage.copies[repository])
    env["SERVICE_PORT"] = str(free_port())
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    command = [*stage.entrypoint, *stage.cmd]
    command[0] = shutil.which(command[0], path=env["PATH"]) or command[0]

    log_path = tmp_path / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{env['SERVICE_PORT']}", process, log_path)
    try:
        server.wait("/health/ready", 200)
        assert run_probe(stage, env) == 0
        response = httpx.post(server.url + "/translate", json={"text": "Open file"}, timeout=60)
        assert response.status_code == 200, response.text
        [translation] = response.json()["translations"]
        assert translation["text"]
        exposition = httpx.get(server.url + "/metrics").text
        for name in dashboard_metrics()[1]:
            assert re.search(rf"^{name}[{{ ]", exposition, re.MULTILINE), name

        process.send_signal(signal.SIGTERM)  # what `docker stop` sends to PID 1
        returncode = process.wait(timeout=30)
        assert returncode in (0, -signal.SIGTERM), server.log()
        assert "Finished server process" in server.log()
        assert run_probe(stage, env) == 1
    finally:
        server.stop()


def in_build_context(path: str) -> bool:
    """Whether .dockerignore lets ``path`` (relative to the root) into the build context:
    its patterns in order, the last that matches wins (``!`` admits), a directory pattern
    covering everything under it."""
    admitted = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        admit = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or fnmatch.fnmatch(path, pattern):
            admitted = admit
    return admitted


def test_the_build_context_holds_every_shipped_model() -> None:
    """The image serves the repository the Dockerfiles COPY: every bundle file gets in."""
    for manifest in sorted((ROOT / "models").glob("*/manifest.json")):
        for name in [manifest.name, *json.loads(manifest.read_text())["files"]]:
            path = str((manifest.parent / name).relative_to(ROOT))
            assert in_build_context(path), f"{path} is left out by .dockerignore"
    assert not in_build_context("work/data/train.tsv") and not in_build_context(".venv/x")

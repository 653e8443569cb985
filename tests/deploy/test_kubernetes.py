"""The Kubernetes manifests, checked offline: they render, core objects pass
kubernetes-validate's strict schemas, and they agree with the app, the image and the settings.
No cluster runs here; the scaling metric is checked against a running server's /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from service.app import create_app
from service.settings import Settings
from tests.conftest import ROOT
from tests.integration.conftest import Server

KUBE = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.32.0"
CUSTOM = {"ServiceMonitor", "ScaledObject", "PrometheusRule"}  # not in the core schemas

if shutil.which("kubectl") is None:
    pytest.skip("kubectl (with kustomize) is not installed", allow_module_level=True)


def render(path: Path) -> dict[str, dict[str, Any]]:
    out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True,
                         check=True).stdout
    return {d["kind"]: d for d in yaml.safe_load_all(out) if d}


@pytest.fixture(scope="module", params=["cpu", "gpu"])
def objects(request: pytest.FixtureRequest) -> dict[str, dict[str, Any]]:
    return render(KUBE / "overlays" / request.param)


def container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return spec


def test_core_objects_pass_the_strict_schemas(objects: dict[str, dict[str, Any]]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    assert {"Deployment", "Service", "ConfigMap", "Secret", "PodDisruptionBudget",
            "NetworkPolicy", "HorizontalPodAutoscaler", "ServiceMonitor"} <= objects.keys()
    for kind, obj in objects.items():
        if kind not in CUSTOM:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(("overlay", "kind", "schema"), [
    ("cpu", "ServiceMonitor", "servicemonitor.monitoring.coreos.com_v1.json"),
    ("cpu", "PrometheusRule", "prometheusrule.monitoring.coreos.com_v1.json"),
    ("cpu-keda", "ScaledObject", "scaledobject.keda.sh_v1alpha1.json")])
def test_custom_resources_match_their_schemas(overlay: str, kind: str, schema: str) -> None:
    obj = render(KUBE / "overlays" / overlay)[kind]
    jsonschema.validate(obj, json.loads((KUBE / "schemas" / schema).read_text()))
    if kind == "ServiceMonitor":  # it must select the Service that has the named port
        service = render(KUBE / "overlays" / overlay)["Service"]
        labels = service["metadata"]["labels"]
        assert obj["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert obj["spec"]["endpoints"][0]["port"] in {p["name"] for p in
                                                      service["spec"]["ports"]}


def test_the_cluster_gets_the_compose_rules(tmp_path: Path) -> None:
    """Same groups as docker/prometheus-rules.yml (checked in a real Prometheus by
    tests/integration/test_prometheus.py) but for TargetDown's job: the ServiceMonitor's,
    named after the Service; and promtool accepts them."""
    rendered = render(KUBE / "overlays" / "cpu")
    groups = rendered["PrometheusRule"]["spec"]["groups"]
    compose = yaml.safe_load((ROOT / "docker" / "prometheus-rules.yml").read_text())["groups"]
    service = rendered["Service"]["metadata"]["name"]
    down = {r.get("alert"): r for g in groups for r in g["rules"]}["TranslateTargetDown"]
    assert down["expr"] == f'up{{job="{service}"}} == 0'
    down["expr"] = 'up{job="translate"} == 0'
    assert groups == compose
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus: `make tools`)")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    checked = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


OVERLAYS = ("cpu", "gpu", "cpu-keda")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_pick_exactly_the_service_pods(overlay: str) -> None:
    """Every Service, PodDisruptionBudget and NetworkPolicy selects the Deployment's pods by
    a non-empty set of labels that includes the app's name: an empty selector matches no pod
    (policy/v1 PDB) or every pod of the namespace (NetworkPolicy)."""
    objects = render(KUBE / "overlays" / overlay)
    deployment = objects["Deployment"]["spec"]
    pods = deployment["template"]["metadata"]["labels"]
    assert deployment["selector"]["matchLabels"].items() <= pods.items()
    selectors = {"Service": objects["Service"]["spec"]["selector"],
                 "PodDisruptionBudget":
                     objects["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"],
                 "NetworkPolicy": objects["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"]}
    for kind, selector in selectors.items():
        assert selector.get("app.kubernetes.io/name") == "attn-translate", kind
        assert selector.items() <= pods.items(), kind
    assert set(objects["PodDisruptionBudget"]["spec"]) == {"minAvailable", "selector"}
    assert set(objects["NetworkPolicy"]["spec"]["podSelector"]) == {"matchLabels"}
    assert objects["PodDisruptionBudget"]["spec"]["minAvailable"] < deployment["replicas"]
    scaler = objects.get("HorizontalPodAutoscaler") or objects["ScaledObject"]
    assert scaler["spec"]["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]


def test_probes_and_ports_exist_in_the_app(objects: dict[str, dict[str, Any]]) -> None:
    paths = set(create_app(Settings()).openapi()["paths"])
    c = container(objects)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] in paths
        assert c[probe]["httpGet"]["port"] == "http"
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    port = re.search(r"SERVICE_PORT=(\d+)", dockerfile)
    assert port and c["ports"][0]["containerPort"] == int(port.group(1))


def test_settings_names_and_values_match_the_service(objects: dict[str, dict[str, Any]]) -> None:
    fields = {f"SERVICE_{name.upper()}" for name in Settings.model_fields}
    env = {**objects["ConfigMap"]["data"], **objects["Secret"]["stringData"]}
    assert set(env) <= fields, set(env) - fields
    Settings(**{k.removeprefix("SERVICE_").lower(): v for k, v in env.items()})  # valid
    assert env["SERVICE_INTRA_OP_THREADS"] == container(objects)["resources"]["requests"]["cpu"]


def test_shutdown_fits_in_the_grace_period(objects: dict[str, dict[str, Any]]) -> None:
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    sleep = int(container(objects)["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = float(objects["ConfigMap"]["data"]["SERVICE_SHUTDOWN_TIMEOUT_S"])
    assert sleep >= 3  # longer than endpoint propagation usually takes
    assert spec["terminationGracePeriodSeconds"] >= sleep + drain + 5


def test_pod_is_locked_down(objects: dict[str, dict[str, Any]]) -> None:
    spec = objects["Deployment"]["spec"]["template"]["spec"]
    c = container(objects)
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    user = re.search(r"^USER (\d+)", (ROOT / "docker" / "Dockerfile").read_text(), re.M)
    assert user and spec["securityContext"]["runAsUser"] == int(user.group(1))
    assert c["securityContext"] == {"allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert spec["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert objects["NetworkPolicy"]["spec"]["egress"] == []


def test_images_are_the_ones_docker_builds() -> None:
    compose = yaml.safe_load((ROOT / "docker" / "docker-compose.yml").read_text())
    images = {s["image"] for s in compose["services"].values() if "image" in s}
    for overlay, tag in (("cpu", "cpu"), ("gpu", "cuda")):
        image = container(render(KUBE / "overlays" / overlay))["image"]
        assert image == f"attn-translate:{tag}" and image in images
    gpu = container(render(KUBE / "overlays" / "gpu"))
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_the_keda_overlay_replaces_the_hpa() -> None:
    objects = render(KUBE / "overlays" / "cpu-keda")
    assert "HorizontalPodAutoscaler" not in objects and "ScaledObject" in objects
    scaled = objects["ScaledObject"]["spec"]
    assert scaled["scaleTargetRef"]["name"] == objects["Deployment"]["metadata"]["name"]


def test_the_scaling_metric_exists_in_a_running_service(server: Server) -> None:
    metrics = httpx.get(server.url + "/metrics").text
    objects = render(KUBE / "overlays" / "cpu")
    named = {objects["HorizontalPodAutoscaler"]["spec"]["metrics"][0]["pods"]["metric"]["name"]}
    keda = yaml.safe_load((KUBE / "components" / "keda" / "scaledobject.yaml").read_text())
    named |= set(re.findall(r"translate_\w+", keda["spec"]["triggers"][0]["metadata"]["query"]))
    rules = yaml.safe_load((KUBE / "autoscaling" / "prometheus-adapter-rules.yaml").read_text())
    named |= set(re.findall(r"translate_\w+", rules["rules"]["custom"][0]["seriesQuery"]))
    for name in named:
        assert re.search(rf"^{name} ", metrics, re.M), name

"""Deployment files: they parse, and every image, command, port, env name, probe and metric
they reference exists in the code (cross-checked against Settings, the CLI and the apps)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from slocast.cli import app as cli_app
from slocast.serving import DataPlane, create_app
from slocast.settings import Settings
from slocast.store import SampleStore, sqlite_url
from slocast.trainer.http import create_trainer_app
from slocast.trainer.service import Trainer, TrainerConfig
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
K8S_VERSION = "1.30.0"  # the oldest Kubernetes the manifests target (autoscaling/v2, PDB v1)


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _k8s_objects() -> list[dict[str, Any]]:
    return [doc for path in sorted(K8S.rglob("*.yaml")) for doc in _documents(path)]


def _settings_env_names() -> set[str]:
    names = set()
    for field, info in Settings.model_fields.items():
        names.add(f"SLOCAST_{field.upper()}")
        alias = info.validation_alias
        for choice in getattr(alias, "choices", []):
            if isinstance(choice, str) and choice.isupper():
                names.add(choice)
    return names


def _containers() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for obj in _k8s_objects():
        spec = obj.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            out.append((obj["metadata"]["name"], container))
    return out


def _check_cli_args(args: list[str]) -> None:
    """``args`` name a real subcommand and only options it declares."""
    command: Any = typer.main.get_command(cli_app)
    words = list(args)
    # Typer ships its own Click: look for sub-commands by duck typing.
    while hasattr(command, "commands") and words and not words[0].startswith("-"):
        name = words.pop(0)
        assert name in command.commands, f"no CLI command {name!r} in {args}"
        command = command.commands[name]
    declared = {opt for p in command.params for opt in getattr(p, "opts", [])}
    for word in words:
        if word.startswith("--"):
            assert word.split("=")[0] in declared, f"{args}: {word} is not an option"


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    home = tmp_path_factory.mktemp("deploy")
    trainer = Trainer(SampleStore(sqlite_url(home)), TrainerConfig(home=home))
    paths = {
        "predict": {getattr(r, "path", "") for r in create_app(DataPlane()).routes},
        "trainer": {getattr(r, "path", "") for r in create_trainer_app(trainer).routes},
    }
    return paths


def test_every_yaml_and_json_parses() -> None:
    files = [*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")]
    assert len(files) >= 10
    for path in files:
        assert _documents(path), path
    for path in DEPLOY.rglob("*.json"):
        json.loads(path.read_text())


def test_k8s_objects_are_well_formed() -> None:
    kinds = set()
    for obj in _k8s_objects():
        if obj.get("kind") == "Kustomization":
            continue
        assert obj.get("apiVersion") and obj.get("kind") and obj["metadata"].get("name"), obj
        kinds.add(obj["kind"])
    assert {"Deployment", "Service", "ConfigMap", "PersistentVolumeClaim",
            "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= kinds  # fmt: skip
    for name, container in _containers():
        if container["image"] != "slocast":
            continue
        assert container.get("readinessProbe") and container.get("livenessProbe"), name
        assert container["resources"]["requests"] and container["resources"]["limits"], name


def test_kustomizations_reference_existing_files() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        doc = _documents(kustomization)[0]
        for resource in doc.get("resources", []):
            assert (kustomization.parent / resource).exists(), f"{kustomization}: {resource}"
    names = {(o["kind"], o["metadata"]["name"]) for o in _k8s_objects() if "metadata" in o}
    for kustomization in K8S.rglob("kustomization.yaml"):
        for patch in _documents(kustomization)[0].get("patches", []):
            target = patch["target"]
            assert (target["kind"], target["name"]) in names, patch


@pytest.mark.skipif(
    not (shutil.which("kustomize") or shutil.which("kubectl")), reason="no kustomize / kubectl"
)
def test_kustomize_builds_every_overlay_into_objects_kubernetes_accepts() -> None:
    """Every rendered object passes Kubernetes' own schema (strict: no unknown fields), for
    the oldest version the manifests target; a misspelt field is caught (control)."""
    import kubernetes_validate

    tool = ["kustomize", "build"] if shutil.which("kustomize") else ["kubectl", "kustomize"]
    kinds = set()
    for overlay in ("base", "overlays/dev", "overlays/llm-d-sidecar"):
        rendered = subprocess.run(
            [*tool, str(K8S / overlay)], check=True, capture_output=True, text=True
        ).stdout
        for doc in yaml.safe_load_all(rendered):
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            kinds.add(doc["kind"])
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "ConfigMap"} <= kinds
    broken = next(d for d in yaml.safe_load_all(rendered) if d["kind"] == "Deployment")
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_container_commands_ports_and_probes_exist_in_the_code(routes) -> None:
    for name, container in _containers():
        if container["image"] != "slocast":
            continue
        args = container["args"]
        _check_cli_args(args)
        port = int(args[args.index("--port") + 1])
        app = "trainer" if args[0] == "trainer" else "predict"
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["path"] in routes[app], (name, get["path"])
            declared = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            assert declared.get(get["port"], get["port"]) == port, (name, probe)
    assert Settings().trainer_port == 8000 and Settings().serve_port == 8001


def test_env_names_are_settings_slocast_reads() -> None:
    known = _settings_env_names()
    configmaps = [o for o in _k8s_objects() if o.get("kind") == "ConfigMap"]
    for configmap in configmaps:
        for key in configmap["data"]:
            assert key in known, f"ConfigMap sets {key}, which slocast does not read"
    compose = _documents(DEPLOY / "docker-compose.yml")[0]
    for service, spec in compose["services"].items():
        if spec.get("image", "").startswith(("postgres", "redis", "prom/", "grafana/")):
            continue
        for key in spec.get("environment", {}):
            assert key in known | {"HEALTH_PORT"}, f"{service}: {key}"
        _check_cli_args(spec["command"])
    for _, container in _containers():
        for env in container.get("env", []):
            if container["image"] == "slocast":
                assert env["name"] in known, env


def test_prometheus_scrapes_real_endpoints(routes) -> None:
    config = _documents(DEPLOY / "prometheus" / "prometheus.yml")[0]
    compose = _documents(DEPLOY / "docker-compose.yml")[0]["services"]
    for job in config["scrape_configs"]:
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert host in compose, target
            assert f"--port {port}" in " ".join(compose[host]["command"]), target
            app = "trainer" if host == "trainer" else "predict"
            assert job["metrics_path"] in routes[app]


def _exposed_metric_names(tmp_path: Path) -> set[str]:
    from slocast.serving.metrics import ServingMetrics

    text = ServingMetrics().render().decode()
    names = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")}
    exposed = set()
    for name in names:
        exposed |= {name, f"{name}_total", f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    # The trainer's llm-d /metrics lines (text format written by hand).
    source = (REPO / "src/slocast/trainer/http.py").read_text()
    exposed |= {"model_quantile", "training_samples_count"}
    for suffix in re.findall(r'f"\{name\}_(\w+)\{\{', source):
        exposed |= {f"ttft_{suffix}", f"tpot_{suffix}"}
    exposed |= set(re.findall(r"(slocast_\w+)\{\{", source))
    return exposed


def test_grafana_and_alerts_use_only_metrics_slocast_exposes(tmp_path: Path) -> None:
    exposed = _exposed_metric_names(tmp_path)
    dashboard = json.loads((DEPLOY / "grafana/dashboards/slocast.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    rules = _documents(DEPLOY / "prometheus" / "alerts.yml")[0]["groups"][0]["rules"]
    exprs += [rule["expr"] for rule in rules]
    functions = {"sum", "max", "time", "rate", "increase", "histogram_quantile", "by", "on",
                 "group_left", "group_right", "le", "route", "status", "domain"}  # fmt: skip
    for expr in exprs:
        for name in re.findall(
            r"[a-z_][a-z0-9_]*", re.sub(r'"[^"]*"|\{[^}]*\}|\[[^]]*\]', "", expr)
        ):
            if name not in functions:
                assert name in exposed, f"{name} (in {expr}) is not a slocast metric"
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("requests", "latency", "cache", "coverage", "gating"):
        assert topic in titles


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt prometheus)"
)
def test_promtool_accepts_the_config_and_rules() -> None:
    for command in (["check", "config"], ["check", "rules"]):
        target = "prometheus.yml" if command[1] == "config" else "alerts.yml"
        run = subprocess.run(
            ["promtool", *command, str(DEPLOY / "prometheus" / target)],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt prometheus)"
)
def test_stale_model_alert_fires_only_for_a_server_behind_the_trainer(tmp_path: Path) -> None:
    """promtool's rule unit test: a trainer publishing every minute, one server following it
    and one stuck on its first bundle; only the stuck one alerts, once 5 minutes behind for
    10 minutes."""
    trainer, served = (
        "slocast_trainer_bundle_created_timestamp_seconds",
        "slocast_model_created_timestamp_seconds",
    )
    spec = tmp_path / "stale_test.yml"
    spec.write_text(f"""
rule_files: [{DEPLOY / "prometheus" / "alerts.yml"}]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: {trainer}{{domain="llm-tpot",instance="trainer:8000"}}
        values: 1000+60x40
      - series: {served}{{domain="llm-tpot",instance="predict-1:8001"}}
        values: 1000+60x40
      - series: {served}{{domain="llm-tpot",instance="predict-2:8001"}}
        values: 1000x40
    alert_rule_test:
      - eval_time: 15m
        alertname: SlocastServingStaleModel
        exp_alerts: []
      - eval_time: 20m
        alertname: SlocastServingStaleModel
        exp_alerts:
          - exp_labels: {{severity: warning, domain: llm-tpot, instance: "predict-2:8001"}}
            exp_annotations:
              summary: predict-2:8001 serves llm-tpot from a bundle 1200 s older than the trainer's
""")  # fmt: skip
    run = subprocess.run(["promtool", "test", "rules", str(spec)], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_dockerfile_is_multistage_non_root_with_every_entry_point() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM .* AS (\w+)", text, flags=re.MULTILINE)
    assert stages == ["build", "runtime"]
    runtime = text.split("AS runtime")[1]
    assert "gcc" not in runtime.split("#")[0] and "USER 10001" in runtime
    assert 'ENTRYPOINT ["slocast"]' in runtime
    for entry in (["trainer"], ["serve", "http"], ["serve", "grpc"], ["dashboard"]):
        _check_cli_args(entry)
        assert f"slocast {' '.join(entry)}" in text

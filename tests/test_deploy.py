"""The deployment files (S9) parse, name what the service really exposes, and fit together.
`promtool` checks run only where Prometheus' promtool is installed."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from verticalize.serve.metrics import METRIC_LABELS, METRIC_NAMES
from verticalize.serve.security import KeyStore

DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
METRIC = re.compile(r"\bverticalize_[a-zA-Z0-9_]+")
SELECTOR = re.compile(r"\b(verticalize_[a-zA-Z0-9_]+)\s*(?:\{([^}]*)\})?")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)")
LEGEND = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yml", ".yaml"))


def load_all(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def k8s_objects() -> dict[str, dict]:
    return {d["kind"]: d for p in K8S.glob("*.yaml") for d in load_all(p) if "kind" in d}


def bind_mounts(service: dict) -> dict[str, str]:
    """{host path: container path} of a compose service's volumes ('host:container[:ro]')."""
    out = {}
    for volume in service.get("volumes", []):
        parts = volume.split(":")
        if parts[-1] in ("ro", "rw"):
            parts = parts[:-1]
        out[":".join(parts[:-1])] = parts[-1]
    return out


def check_promql(expr: str, where: str) -> set[str]:
    """Assert the expression uses only exported metrics, and only their labels in
    matchers, by/on clauses; return the labels its result may carry."""
    names = set(METRIC.findall(expr))
    assert names, f"{where}: no verticalize metric in {expr!r}"
    unknown = names - set(METRIC_NAMES)
    assert not unknown, f"{where}: {sorted(unknown)} are not exported (METRIC_NAMES)"
    labels = set().union(*(METRIC_LABELS[n] for n in names))
    for name, matchers in SELECTOR.findall(expr):
        for label in MATCHER.findall(matchers or ""):
            assert label in METRIC_LABELS[name], f"{where}: {name} has no label {label!r}"
    for group in GROUPING.findall(expr):
        for label in filter(None, (x.strip() for x in group.split(","))):
            assert label in labels, f"{where}: grouping label {label!r} is not on {names}"
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    for ch in re.sub(r'"[^"]*"', "", expr):  # brackets inside label values do not count
        if ch in pairs:
            stack.append(pairs[ch])
        elif ch in pairs.values():
            assert stack and stack.pop() == ch, f"{where}: unbalanced {ch!r} in {expr!r}"
    assert not stack, f"{where}: unclosed brackets in {expr!r}"
    return labels


def test_every_yaml_parses():
    files = yaml_files()
    assert len(files) >= 10
    for path in files:
        assert load_all(path), f"{path} is empty"


def test_deployment_rolls_without_downtime_and_probes():
    dep = k8s_objects()["Deployment"]
    assert dep["apiVersion"] == "apps/v1"
    strategy = dep["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"]["maxUnavailable"] == 0
    pod = dep["spec"]["template"]["spec"]
    assert (
        dep["spec"]["selector"]["matchLabels"].items()
        <= dep["spec"]["template"]["metadata"]["labels"].items()
    )
    (c,) = pod["containers"]
    port_names = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert c[probe]["httpGet"]["port"] in port_names
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(c["resources"][kind])
    assert pod["securityContext"]["runAsNonRoot"] is True
    # the keys file the server reads is the Secret volume's file
    cmd = c["command"]
    keys_path = Path(cmd[cmd.index("--api-keys-file") + 1])
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    secret_volume = next(n for n, v in volumes.items() if "secret" in v)
    assert mounts[secret_volume]["mountPath"] == str(keys_path.parent)
    assert [i["path"] for i in volumes[secret_volume]["secret"]["items"]] == [keys_path.name]
    assert cmd[:3] == ["verticalize", "serve", "/models/current"]
    assert any(m["mountPath"] == "/models" and m["readOnly"] for m in mounts.values())
    assert set(mounts) == set(volumes)


def test_service_hpa_and_secret_fit_the_deployment(tmp_path):
    objs = k8s_objects()
    dep, svc, hpa = objs["Deployment"], objs["Service"], objs["HorizontalPodAutoscaler"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in dep["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in svc["spec"]["ports"]} <= port_names
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": dep["metadata"]["name"],
    }
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert hpa["spec"]["minReplicas"] >= 2
    secret = objs["Secret"]
    volumes = dep["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("secret", {}).get("secretName") == secret["metadata"]["name"] for v in volumes)
    keys = tmp_path / "api-keys"
    keys.write_text(secret["stringData"]["api-keys"])
    store = KeyStore.from_file(keys)  # the example is a valid keys file
    assert store.ids == ["billing-service", "ops"] and store.verify("vz-guess") is None
    pvc = objs["PersistentVolumeClaim"]
    assert any(
        v.get("persistentVolumeClaim", {}).get("claimName") == pvc["metadata"]["name"]
        for v in volumes
    )
    kustomization = load_all(K8S / "kustomization.yaml")[0]
    assert all((K8S / r).is_file() for r in kustomization["resources"])
    assert "secret.example.yaml" not in kustomization["resources"]


def test_alert_rules_use_exported_metrics():
    rules = [r for g in load_all(DEPLOY / "prometheus/alerts.yml")[0]["groups"] for r in g["rules"]]
    by_name = {r["alert"]: r for r in rules}
    for rule in rules:
        assert {"alert", "expr", "for", "labels", "annotations"} <= set(rule)
        check_promql(rule["expr"], rule["alert"])
        for text in rule["annotations"].values():
            for label in re.findall(r"\$labels\.([a-zA-Z_]+)", text):
                assert label in check_promql(rule["expr"], rule["alert"])
    p99 = by_name["VerticalizeP99LatencyHigh"]
    assert "histogram_quantile(" in p99["expr"] and "0.99" in p99["expr"]
    assert "verticalize_request_duration_seconds_bucket" in p99["expr"]
    assert re.search(r"sum by \(le, route, model_version\)", p99["expr"])
    assert re.search(r">\s*0\.2\s*$", p99["expr"].strip()) and p99["for"] == "5m"
    acc = by_name["VerticalizeFeedbackAccuracyDrop"]["expr"]
    assert 'verticalize_feedback_total{kind="wrong"}' in acc
    assert "verticalize_model_test_accuracy) - 0.05" in acc and ">= 20" in acc


def test_dashboard_panels_use_exported_metrics():
    dash = json.loads((DEPLOY / "grafana/dashboard.json").read_text(encoding="utf-8"))
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 10
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
    exprs = []
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            labels = check_promql(target["expr"], panel["title"])
            for label in LEGEND.findall(target.get("legendFormat", "")):
                assert label in labels, f"{panel['title']}: legend label {label!r}"
            exprs.append(target["expr"])
    titles = " | ".join(p["title"].lower() for p in panels)
    for needed in ("per second by route", "p50 / p99", "error rate", "batch size", "queue depth"):
        assert needed in titles
    assert "feedback by kind" in titles and "by version" in titles
    joined = "\n".join(exprs)
    for metric in (
        "verticalize_requests_total",
        "verticalize_batch_size_bucket",
        "verticalize_queue_depth",
        "verticalize_feedback_total",
        "verticalize_model_test_accuracy",
    ):
        assert metric in joined
    assert "sum by (le, route, model_version)" in joined  # p50/p99 per route and version


def test_grafana_and_prometheus_wiring_matches_compose():
    compose = load_all(DEPLOY / "docker-compose.yml")[0]
    services = compose["services"]
    assert {"verticalize", "prometheus", "grafana"} <= set(services)
    mounts = {name: bind_mounts(s) for name, s in services.items()}
    for name, volumes in mounts.items():
        for host in volumes:
            if host.startswith("./"):  # files from this folder must exist
                assert (DEPLOY / host).exists(), f"{name}: {host} missing"
    prom = load_all(DEPLOY / "prometheus/prometheus.yml")[0]
    prom_targets = {v: k for k, v in mounts["prometheus"].items()}
    for rule_file in prom["rule_files"]:
        assert prom_targets[rule_file] == "./prometheus/alerts.yml"
    (target,) = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host == "verticalize" and f"{port}:{port}" in services["verticalize"]["ports"][0]
    datasource = load_all(DEPLOY / "grafana/provisioning/datasources/prometheus.yml")[0]
    (ds,) = datasource["datasources"]
    assert ds["url"] == "http://prometheus:9090"
    dash = json.loads((DEPLOY / "grafana/dashboard.json").read_text(encoding="utf-8"))
    var = next(v for v in dash["templating"]["list"] if v["type"] == "datasource")
    assert var["current"]["value"] == ds["uid"]
    provider = load_all(DEPLOY / "grafana/provisioning/dashboards/verticalize.yml")[0]
    path = provider["providers"][0]["options"]["path"]
    assert mounts["grafana"]["./grafana/dashboard.json"].startswith(path + "/")
    assert mounts["grafana"]["./grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    body = re.sub(r"\\\n\s*", "", text)  # join continued lines
    instructions = [line for line in body.splitlines() if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    assert re.search(
        r"pip install torch==2\.13\.0 --index-url https://download\.pytorch\.org/whl/cpu", body
    )
    torch_at = body.index("torch==2.13.0")
    assert body.index("pip install .") > torch_at  # the CPU wheel is in place first
    user = next(line.split()[1] for line in instructions if line.startswith("USER "))
    assert user.split(":")[0] not in ("root", "0")
    dep = k8s_objects()["Deployment"]
    assert (
        int(user.split(":")[0]) == dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    )
    health = next(line for line in instructions if line.startswith("HEALTHCHECK"))
    assert "/healthz" in health
    cmd = json.loads(next(line for line in instructions if line.startswith("CMD ["))[4:])
    assert cmd[:3] == ["verticalize", "serve", "/models/current"]
    for flag, value in (
        ("--host", "0.0.0.0"),
        ("--port", "8000"),
        ("--api-keys-file", "/secrets/api-keys"),
    ):
        assert cmd[cmd.index(flag) + 1] == value
    assert "EXPOSE 8000" in instructions
    assert cmd == dep["spec"]["template"]["spec"]["containers"][0]["command"]
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    rules = [line for line in ignore if line and not line.startswith("#")]
    assert rules[0] == "**" and "!src/" in rules  # only what the image installs is sent


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_rules_and_config(tmp_path):
    rules = subprocess.run(
        ["promtool", "check", "rules", str(DEPLOY / "prometheus/alerts.yml")],
        capture_output=True,
        text=True,
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    config = tmp_path / "prometheus.yml"  # rule_files point at the container path
    prom = load_all(DEPLOY / "prometheus/prometheus.yml")[0]
    prom["rule_files"] = [str(DEPLOY / "prometheus/alerts.yml")]
    config.write_text(yaml.safe_dump(prom))
    checked = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_service_writes_only_to_its_volume():
    """The audit log and feedback of a bare model folder go to ./serve: the working
    directory must be the writable volume in both the image and the pod."""
    text = re.sub(r"\\\n\s*", "", (DEPLOY / "Dockerfile").read_text(encoding="utf-8"))
    workdir = [line.split()[1] for line in text.splitlines() if line.startswith("WORKDIR ")][-1]
    assert f'VOLUME ["{workdir}"]' in text
    pod = k8s_objects()["Deployment"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["workingDir"] == workdir and c["securityContext"]["readOnlyRootFilesystem"]
    writable = {m["mountPath"] for m in c["volumeMounts"] if not m.get("readOnly")}
    assert workdir in writable and "/tmp" in writable

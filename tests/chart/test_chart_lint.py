"""The chart lints, its values schema rejects bad values with a message naming the field, and the files it
shares with the rest of the repository (CRDs, dashboard) are the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zeta_operator.api import crdgen

from .render import ALL_ON, CHART, MANIFESTS, REPO, Helm, one, write_values


@pytest.mark.parametrize("values", [(), (ALL_ON,)], ids=["defaults", "all-optional-on"])
def test_helm_lint_passes(helm: Helm, values: tuple[Path, ...]) -> None:
    result = helm.lint(*values)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_all_optional_on_really_switches_everything_on() -> None:
    values = yaml.safe_load(ALL_ON.read_text())
    assert values["router"]["hpa"]["enabled"] and values["router"]["pdb"]["enabled"]
    assert values["serviceMonitor"]["enabled"] and values["podMonitor"]["enabled"]
    assert values["grafana"]["dashboard"]["enabled"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"router": {"replicas": "two"}}, "at '/router/replicas': got string, want integer"),
        ({"router": {"replica": 2}}, "at '/router': additional properties 'replica' not allowed"),
        ({"image": {"pullPolicy": "Sometimes"}}, "at '/image/pullPolicy': value must be one of"),
        ({"router": {"service": {"type": "Ingress"}}}, "at '/router/service/type': value must be one of"),
        ({"router": {"policy": {"configMapName": "Routes_Demo"}}}, "at '/router/policy/configMapName'"),
        ({"router": {"resources": {"requests": None}}}, "missing property 'requests'"),
        ({"operator": {"healthPort": 70000}}, "at '/operator/healthPort'"),
        ({"serviceMonitor": {"enabled": True, "interval": "often"}}, "at '/serviceMonitor/interval'"),
    ],
    ids=[
        "replicas-string",
        "unknown-key",
        "pull-policy",
        "service-type",
        "configmap-name",
        "no-requests",
        "port",
        "interval",
    ],
)
def test_values_schema_rejects_bad_values(helm: Helm, tmp_path: Path, values: dict, message: str) -> None:
    bad = write_values(tmp_path, "bad", values)
    linted = helm.lint(bad)
    assert linted.returncode != 0
    assert "[ERROR] values.yaml: - " in linted.stdout, linted.stdout
    assert message in linted.stdout, linted.stdout
    # What `helm install` (and template) says: the field and the reason.
    rendered = helm.run("template", "zeta", str(CHART), "--values", str(bad), check=False)
    assert rendered.returncode != 0
    assert "values don't meet the specifications of the schema(s)" in rendered.stderr
    assert message in rendered.stderr, rendered.stderr


def test_hpa_bounds_are_checked(helm: Helm, tmp_path: Path) -> None:
    bad = write_values(
        tmp_path, "hpa", {"router": {"hpa": {"enabled": True, "minReplicas": 5, "maxReplicas": 3}}}
    )
    result = helm.run("template", "zeta", str(CHART), "--values", str(bad), check=False)
    assert result.returncode != 0
    assert "router.hpa.minReplicas (5) must not exceed router.hpa.maxReplicas (3)" in result.stderr


def test_chart_crds_are_the_generated_ones() -> None:
    assert crdgen.main(["--check"]) == 0, "run python -m zeta_operator.api.crdgen"
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        assert (CHART / "crds" / crd.name).read_text() == crd.read_text(), crd.name
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(
        p.name for p in (REPO / "crds").iterdir()
    )


def test_kustomize_copies_are_in_sync() -> None:
    """kustomize cannot load files from outside manifests/, so it holds copies; they must not drift."""
    for crd in sorted((REPO / "crds").glob("*.yaml")):
        copy = MANIFESTS / "crds" / crd.name
        assert copy.read_text() == crd.read_text(), f"{copy} differs: cp crds/*.yaml manifests/crds/"
    dashboard = CHART / "dashboards" / "zeta.json"
    copy = MANIFESTS / "dashboards" / "zeta.json"
    assert copy.read_text() == dashboard.read_text(), f"{copy} differs: cp {dashboard} {copy}"


def test_dashboard_ships_as_a_labelled_configmap_with_the_panels(helm: Helm) -> None:
    docs = helm.template(namespace="zeta-system")
    cm = one(docs, "ConfigMap", "-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(cm["data"]["zeta.json"])
    assert dashboard["uid"] == "zeta-routing"
    exprs = {
        p["title"]: " ".join(t["expr"] for t in p.get("targets", []))
        for p in dashboard["panels"]
        if p["type"] != "row"
    }
    wanted = {
        "Weights per class and backend": "zeta_operator_weight",
        "Backend load: requests in flight": "zeta_router_inflight_requests",
        "Latency p95 by class": "zeta_router_request_duration_seconds_bucket",
        "Router queue depth by class": "zeta_router_queue_depth",
        "Offload and overflow decisions": "zeta_router_decisions_total",
    }
    for title, metric in wanted.items():
        assert metric in exprs.get(title, ""), f"panel {title!r} should query {metric}"
    assert "task_class" in exprs["Latency p95 by class"] and "0.95" in exprs["Latency p95 by class"]
    assert 'reason=~"offload|overflow"' in exprs["Offload and overflow decisions"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"

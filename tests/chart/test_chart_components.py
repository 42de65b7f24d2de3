"""The router and the operator as real processes, started with the chart's own command line and environment,
authenticated only by a ServiceAccount token bound to exactly the chart's RBAC: they do their job with it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import kubernetes
import yaml

from zeta_dev.launch.router import start_router
from zeta_dev.localcluster.cluster import Cluster
from zeta_dev.localcluster.processes import ManagedProcess, free_port, wait_until
from zeta_dev.tables import one_backend_table
from zeta_operator.api.common import GROUP, VERSION
from zeta_operator.api.table import CONFIGMAP_KEY

from .render import Doc, Helm, one

TABLE = "zeta-routes-demo"


def _table(version: int) -> str:
    return one_backend_table(policy="chart-test/demo", model="tiny", version=version).to_json()


def _rbac(docs: list[Doc], component: str) -> list[Doc]:
    kinds = ("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
    return [d for d in docs if d["kind"] in kinds and f"-{component}" in d["metadata"]["name"]]


def _container(docs: list[Doc], component: str) -> dict[str, Any]:
    container: dict[str, Any] = one(docs, "Deployment", f"-{component}")["spec"]["template"]["spec"][
        "containers"
    ][0]
    return container


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: str(e["value"]) for e in container.get("env", [])}


def test_router_follows_its_configmap_under_the_charts_role(
    helm: Helm, cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    docs = helm.template(
        namespace=namespace, values={"router": {"policy": {"name": "demo", "configMapName": TABLE}}}
    )
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(_rbac(docs, "router")))
    admin = kubernetes.client.CoreV1Api(cluster.api_client())
    admin.create_namespaced_config_map(
        namespace, {"metadata": {"name": TABLE}, "data": {CONFIGMAP_KEY: _table(1)}}
    )

    router = _container(docs, "router")
    assert router["command"][0] == "zeta-router"
    # The chart's flags and environment, except where to listen (a free port here, not 0.0.0.0:8080) and the
    # credentials (a token kubeconfig here, the mounted ServiceAccount token in a pod).
    args = [a for a in router["command"][1:] if not a.startswith("--listen")]
    assert f"--configmap={namespace}/{TABLE}" in args
    token = cluster.service_account_token(namespace, "zeta-router")
    kubeconfig = cluster.kubeconfig_for_token(
        token, user="zeta-router", directory=tmp_path, namespace=namespace
    )
    with start_router(kubeconfig=kubeconfig, args=args, env=_env(router), log_dir=tmp_path) as running:
        assert running.status("/readyz") == 200  # it read the table through the API, as the Role allows
        assert running.metric("zeta_router_table_version") == 1
        admin.patch_namespaced_config_map(TABLE, namespace, {"data": {CONFIGMAP_KEY: _table(2)}})
        wait_until(
            lambda: running.metric("zeta_router_table_version") == 2,
            timeout=20,
            what="the watched table reloading",
        )
        log = running.process.log.read_text(errors="replace")
    assert "forbidden" not in log.lower(), log


def test_operator_runs_namespaced_under_the_charts_rbac(
    helm: Helm, crds: Cluster, namespace: str, tmp_path: Path
) -> None:
    """Namespaced mode is the narrowest grant the chart makes (RoleBindings plus kopf's cluster-scoped reads);
    the operator must still do its whole cycle with it: read the CRs, write the table, patch status."""
    release = f"op-{namespace}"
    values = {"operator": {"allNamespaces": False, "watchNamespaces": [namespace]}}
    docs = helm.template(namespace=namespace, release=release, values=values)
    rbac = _rbac(docs, "operator")
    crds.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(rbac))
    try:
        _run_operator_cycle(crds, namespace, docs, tmp_path)
    finally:
        for doc in rbac:
            if doc["kind"].startswith("Cluster"):
                crds.kubectl(
                    "delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found", check=False
                )


def _run_operator_cycle(cluster: Cluster, namespace: str, docs: list[Doc], tmp_path: Path) -> None:
    operator = _container(docs, "operator")
    assert operator["command"][0] == "zeta-operator"
    port = free_port()
    args = [
        a if not a.startswith("--health-port") else f"--health-port={port}" for a in operator["command"][1:]
    ]
    assert f"--namespace={namespace}" in args
    name = one(docs, "ServiceAccount", "-operator")["metadata"]["name"]
    token = cluster.service_account_token(namespace, name)
    kubeconfig = cluster.kubeconfig_for_token(token, user=name, directory=tmp_path, namespace=namespace)

    backend = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelBackend",
        "metadata": {"name": "tiny", "labels": {"fleet": "chart-test"}},
        "spec": {
            "model": "tiny",
            "endpoints": {"static": ["http://127.0.0.1:9"]},
            "capabilities": {"tasks": ["chat"], "maxComplexity": 5},
        },
    }
    policy = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RoutingPolicy",
        "metadata": {"name": "demo"},
        "spec": {
            "backends": {"selector": {"matchLabels": {"fleet": "chart-test"}}},
            "routingTable": {"configMapName": TABLE},
            "classes": [
                {"name": "chat", "taskType": "chat", "preferred": ["tiny"], "latencyObjective": "5s"}
            ],
            # Nothing listens there: the operator must carry on from static preferences.
            "prometheus": {"address": f"http://127.0.0.1:{free_port()}", "timeout": "1s"},
            "adaptation": {"interval": "1s"},
        },
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([backend, policy]))

    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    process = ManagedProcess(
        "zeta-operator",
        [sys.executable, "-m", "zeta_operator.operator", *args],
        log=tmp_path / "operator.log",
        env=env,
    )
    custom = kubernetes.client.CustomObjectsApi(cluster.api_client())
    core = kubernetes.client.CoreV1Api(cluster.api_client())

    def table_written() -> bool:
        try:
            return CONFIGMAP_KEY in (core.read_namespaced_config_map(TABLE, namespace).data or {})
        except kubernetes.client.ApiException:
            return False

    def status_written() -> bool:
        status = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "routingpolicies", "demo"
        ).get("status")
        return bool(status and status.get("conditions"))

    try:
        wait_until(status_written, timeout=40, what="RoutingPolicy status from the operator", process=process)
        wait_until(table_written, timeout=40, what="the routing table ConfigMap", process=process)
    finally:
        process.stop()
    log = process.log.read_text(errors="replace")
    assert "forbidden" not in log.lower(), log

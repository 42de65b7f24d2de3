"""A real fleet on the local control plane, for tests and the demo.

Simulated model servers run as processes and appear in the cluster as Pods (status set Ready at 127.0.0.1, the
part a kubelet would play) behind selector ModelBackends; a real Prometheus scrapes them with the labels a
Kubernetes scrape config attaches; the operator runs as a process with a ServiceAccount token bound to exactly
manifests/operator/rbac.yaml.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import kubernetes
import yaml

from zeta_operator.api.common import GROUP, VERSION
from zeta_operator.api.table import CONFIGMAP_KEY, RoutingTable

from .cluster import Cluster
from .controlplane import REPO_ROOT
from .processes import ManagedProcess, free_port, python_child_env, wait_until
from .prometheus import Prometheus

OPERATOR_RBAC = REPO_ROOT / "manifests" / "operator" / "rbac.yaml"


def operator_rbac(namespace: str) -> str:
    """The shipped RBAC, with the ServiceAccount moved into the test namespace (names made unique)."""
    docs = list(yaml.safe_load_all(OPERATOR_RBAC.read_text()))
    for d in docs:
        if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
            d["metadata"]["name"] = f"zeta-operator-{namespace}"
        if d["kind"] == "ServiceAccount":
            d["metadata"]["namespace"] = namespace
        if d["kind"] == "ClusterRoleBinding":
            d["roleRef"]["name"] = f"zeta-operator-{namespace}"
            d["subjects"][0]["namespace"] = namespace
    return yaml.safe_dump_all(docs)


def ready_pod(
    cluster: Cluster, namespace: str, name: str, labels: Mapping[str, str], ip: str = "127.0.0.1"
) -> None:
    """A Pod object that looks scheduled and Ready at ``ip`` (no kubelet runs here; we play its part)."""
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    k = kubernetes.client
    pod = k.V1Pod(
        metadata=k.V1ObjectMeta(name=name, labels=dict(labels)),
        spec=k.V1PodSpec(node_name="local", containers=[k.V1Container(name="server", image="zeta-sim")]),
    )
    core.create_namespaced_pod(namespace, pod)
    set_pod_ready(cluster, namespace, name, True, ip=ip)


def set_pod_ready(cluster: Cluster, namespace: str, name: str, ready: bool, ip: str = "127.0.0.1") -> None:
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "conditions": [
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": stamp}
        ],
    }
    core.patch_namespaced_pod_status(name, namespace, {"status": status})


@dataclass
class OperatorProcess:
    process: ManagedProcess
    health_url: str

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.health_url + "/healthz", timeout=2) as r:
                return int(r.status) == 200
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(self.health_url + "/metrics", timeout=5) as r:
            return str(r.read().decode())


def start_operator(cluster: Cluster, namespace: str, workdir: Path) -> OperatorProcess:
    """The operator as a real process, authenticated only by its ServiceAccount token; healthy on return."""
    cluster.kubectl("apply", "-f", "-", input=operator_rbac(namespace))
    token = cluster.service_account_token(namespace, "zeta-operator")
    kubeconfig = cluster.kubeconfig_for_token(
        token, user="zeta-operator", directory=workdir, namespace=namespace
    )
    port = free_port()
    env = python_child_env({"KUBECONFIG": str(kubeconfig)})
    proc = ManagedProcess(
        "zeta-operator",
        [sys.executable, "-m", "zeta_operator.operator", "--namespace", namespace, f"--health-port={port}"],
        log=workdir / "operator.log",
        env=env,
    )
    op = OperatorProcess(proc, f"http://127.0.0.1:{port}")
    try:
        wait_until(op.healthy, timeout=60, what="operator /healthz", process=proc)
    except BaseException:
        proc.stop()
        raise
    return op


def read_table(cluster: Cluster, namespace: str, name: str) -> RoutingTable | None:
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    try:
        cm = core.read_namespaced_config_map(name, namespace)
    except kubernetes.client.ApiException as e:
        if e.status == 404:
            return None
        raise
    return RoutingTable.from_json((cm.data or {})[CONFIGMAP_KEY])


def get_object(cluster: Cluster, plural: str, namespace: str, name: str) -> dict[str, Any]:
    """A ModelBackend or RoutingPolicy as a dict."""
    api = kubernetes.client.CustomObjectsApi(cluster.api_client())
    return cast(dict[str, Any], api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))


def list_objects(cluster: Cluster, plural: str, namespace: str) -> list[dict[str, Any]]:
    api = kubernetes.client.CustomObjectsApi(cluster.api_client())
    return list(
        cast(dict[str, Any], api.list_namespaced_custom_object(GROUP, VERSION, namespace, plural))["items"]
    )


def policy_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict(get_object(cluster, "routingpolicies", namespace, name).get("status") or {})


def condition(status: Mapping[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == kind), None)


def events(cluster: Cluster, namespace: str) -> list[dict[str, str]]:
    out = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    return [
        {
            "reason": e.get("reason", ""),
            "message": e.get("message", ""),
            "object": e["involvedObject"]["name"],
        }
        for e in json.loads(out)["items"]
    ]


def watch_prometheus(prom: Prometheus, namespace: str, pods: Mapping[str, str]) -> None:
    """Scrape each simulator (address -> pod name) with Kubernetes-style target labels."""
    prom.set_targets(
        namespace,
        {addr: {"namespace": namespace, "pod": pod, "container": "server"} for addr, pod in pods.items()},
    )

"""Every Deployment the chart (defaults and all-optional-on) and the kustomize manifests ship is hardened, has
resource requests, probes, and the command line the components expect."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zeta_dev.localcluster.cluster import Cluster
from zeta_operator.operator.handlers import CYCLE_FINISH_SECONDS
from zeta_operator.router.settings import duration

from .render import ALL_ON, Doc, Helm, by_kind, kustomize, one

POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "runAsUser": 65532,
}


def _rendered(source: str, helm: Helm, cluster: Cluster) -> list[Doc]:
    if source == "manifests":
        return kustomize(cluster)
    files: tuple[Path, ...] = (ALL_ON,) if source == "chart-all-on" else ()
    return helm.template(namespace="zeta-system", values_files=files)


def _subset(actual: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    return {k: actual.get(k) for k in expected}


SOURCES = ["chart-defaults", "chart-all-on", "manifests"]


@pytest.mark.parametrize("source", SOURCES)
def test_every_deployment_is_hardened_and_has_requests(source: str, helm: Helm, cluster: Cluster) -> None:
    deployments = by_kind(_rendered(source, helm, cluster), "Deployment")
    assert len(deployments) == 2
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert _subset(pod.get("securityContext", {}), POD_SECURITY) == POD_SECURITY, name
        assert pod.get("hostNetwork", False) is False and pod.get("hostPID", False) is False, name
        containers = pod["containers"] + pod.get("initContainers", [])
        for c in containers:
            where = f"{name}/{c['name']}"
            assert _subset(c.get("securityContext", {}), CONTAINER_SECURITY) == CONTAINER_SECURITY, where
            assert c["securityContext"].get("privileged", False) is False, where
            requests = c.get("resources", {}).get("requests", {})
            assert requests.get("cpu") and requests.get("memory"), f"{where}: resource requests"
            assert c.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", where
        # A read-only root needs a writable scratch directory.
        assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} >= {"tmp"}, name


@pytest.mark.parametrize("source", SOURCES)
def test_service_account_tokens_are_mounted_only_where_used(
    source: str, helm: Helm, cluster: Cluster
) -> None:
    docs = _rendered(source, helm, cluster)
    for account in by_kind(docs, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False, account["metadata"]["name"]
    for deployment in by_kind(docs, "Deployment"):
        # Both components talk to the API server (CRDs, the routing table), so their pods mount it explicitly.
        assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True


@pytest.mark.parametrize("source", SOURCES)
def test_operator_and_router_command_lines(source: str, helm: Helm, cluster: Cluster) -> None:
    docs = _rendered(source, helm, cluster)
    operator = one(docs, "Deployment", "-operator")
    assert operator["spec"]["replicas"] == 1 and operator["spec"]["strategy"] == {"type": "Recreate"}
    op = operator["spec"]["template"]["spec"]["containers"][0]
    assert op["command"][0] == "zeta-operator" and "--health-port=8080" in op["command"]
    assert ("--all-namespaces" in op["command"]) == (source != "chart-all-on")
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in op["ports"]

    router = one(docs, "Deployment", "-router")
    r = router["spec"]["template"]["spec"]["containers"][0]
    assert r["command"][:3] == [
        "zeta-router",
        "--listen=0.0.0.0:8080",
        "--configmap=zeta-system/zeta-routes-demo",
    ]
    assert r["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert router["spec"]["template"]["spec"]["serviceAccountName"] == router["metadata"]["name"]
    # With the HPA on, the Deployment leaves the replica count to it.
    assert ("replicas" in router["spec"]) == (source != "chart-all-on")

    # The router's Role names exactly the ConfigMap its command line reads, in that namespace.
    role = one(docs, "Role", "-router")
    assert role["metadata"]["namespace"] == "zeta-system"
    assert role["rules"][0]["resourceNames"] == ["zeta-routes-demo"]
    service = one(docs, "Service", "-router")
    assert service["spec"]["selector"] == router["spec"]["selector"]["matchLabels"]


def test_router_policy_namespace_moves_the_role_not_the_router(helm: Helm) -> None:
    docs = helm.template(
        namespace="zeta-system",
        values={"router": {"policy": {"namespace": "llm", "name": "prod", "configMapName": "routes-prod"}}},
    )
    role = one(docs, "Role", "-router")
    binding = one(docs, "RoleBinding", "-router")
    assert (role["metadata"]["namespace"], binding["metadata"]["namespace"]) == ("llm", "llm")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "zeta-router", "namespace": "zeta-system"}
    ]
    assert role["rules"][0]["resourceNames"] == ["routes-prod"]
    router = one(docs, "Deployment", "-router")
    assert router["metadata"]["namespace"] == "zeta-system"
    assert "--configmap=llm/routes-prod" in router["spec"]["template"]["spec"]["containers"][0]["command"]


@pytest.mark.parametrize("source", SOURCES)
def test_the_kubelet_waits_out_the_drains(source: str, helm: Helm, cluster: Cluster) -> None:
    """The router's terminationGracePeriodSeconds covers the drain delay (serving while load balancers catch
    up) plus the grace for requests in flight, otherwise SIGKILL cuts the streams the drain was for; the
    operator's covers a control cycle finishing plus kopf's cancellation timeout."""
    docs = _rendered(source, helm, cluster)
    operator = one(docs, "Deployment", "-operator")
    assert operator["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > CYCLE_FINISH_SECONDS + 10
    router = one(docs, "Deployment", "-router")
    pod = router["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    drain, grace = float(env["ZETA_ROUTER_DRAIN_DELAY"]), float(env["ZETA_ROUTER_SHUTDOWN_GRACE"])
    assert drain >= 3, "endpoint removal takes seconds to reach kube-proxy"
    assert pod["terminationGracePeriodSeconds"] > drain + grace


@pytest.mark.parametrize("source", SOURCES)
def test_each_router_replica_knows_how_many_share_the_fleet(
    source: str, helm: Helm, cluster: Cluster
) -> None:
    """Each replica admits ceil(maxConcurrency / ZETA_ROUTER_REPLICAS) per endpoint: the count must be the
    Deployment's (the HPA's minimum when it owns the count), or an engine gets more or less than its cap."""
    docs = _rendered(source, helm, cluster)
    router = one(docs, "Deployment", "-router")
    env = {e["name"]: e["value"] for e in router["spec"]["template"]["spec"]["containers"][0]["env"]}
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    expected = hpas[0]["spec"]["minReplicas"] if hpas else router["spec"]["replicas"]
    assert int(env["ZETA_ROUTER_REPLICAS"]) == expected
    # ... and reads the engines' own occupancy (to admit less than that share to an engine others fill)
    assert duration(env["ZETA_ROUTER_ENGINE_POLL_INTERVAL"]) == 1.0

"""The demo's running system, for the demo itself and for anything else that needs the same loop (the soak).

`running_stack` starts a real control plane (etcd, kube-apiserver, kube-controller-manager), a real Prometheus,
three simulated model servers (a 4B general model, a 7B coder, a 14B model), the operator and the router (each
with a ServiceAccount token bound to the shipped RBAC), applies the CRDs and the sample policy, and yields them
once the router serves the operator's first routing table. Leaving the block stops everything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..launch.router import RunningRouter, start_router
from ..launch.sim import RunningSim, SimSpec, start_sims
from ..localcluster.cluster import Cluster
from ..localcluster.controlplane import REPO_ROOT, ControlPlane, control_plane_binaries
from ..localcluster.fleet import OperatorProcess, ready_pod, start_operator, watch_prometheus
from ..localcluster.prometheus import Prometheus
from .settings import FLEET, NAMESPACE, demo_backend, demo_policy, sample_manifest
from .show import step, wait_for_table


@dataclass
class Stack:
    """Everything `running_stack` started, and the policy it applied."""

    cluster: Cluster
    prometheus: Prometheus
    sims: dict[str, RunningSim]  # by sample backend name
    operator: OperatorProcess
    router: RunningRouter
    policy: dict[str, Any]

    @property
    def configmap(self) -> str:
        return str(self.policy["spec"]["routingTable"]["configMapName"])


@contextlib.contextmanager
def router_identity(cluster: Cluster, workdir: Path) -> Iterator[Path]:
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "manifests" / "router" / "rbac.yaml"))
    token = cluster.service_account_token(NAMESPACE, "zeta-router")
    yield cluster.kubeconfig_for_token(token, user="zeta-router", directory=workdir, namespace=NAMESPACE)


def watch_prometheus_router(prom: Prometheus, address: str) -> None:
    prom.set_targets(
        "router", {address: {"namespace": NAMESPACE, "pod": "zeta-router-0", "container": "router"}}
    )


@contextlib.contextmanager
def running_stack(workdir: Path) -> Iterator[Stack]:
    """The whole demo system, started step by step (each step printed); everything stops on leaving."""
    step("Kubernetes control plane binaries (built once from pinned Go modules, then cached)")
    binaries = control_plane_binaries()
    step("starting etcd, kube-apiserver (RBAC on) and kube-controller-manager")
    with ControlPlane.running(binaries=binaries) as cp:
        cluster = Cluster(kubeconfig=cp.kubeconfig, kubectl_binary=binaries / "kubectl")
        print(f"    KUBECONFIG={cp.kubeconfig}", flush=True)
        cluster.install_crds()
        cluster.kubectl("create", "namespace", NAMESPACE)
        with _fleet(cluster, workdir) as stack:
            yield stack


@contextlib.contextmanager
def _fleet(cluster: Cluster, workdir: Path) -> Iterator[Stack]:
    step("starting Prometheus and three simulated model servers (4B general, 7B coder, 14B)")
    specs = [SimSpec(model=sample_manifest(n)["spec"]["model"], size_b=s, max_seqs=m, seed=i)
             for i, (n, (s, m)) in enumerate(FLEET.items())]  # fmt: skip
    with Prometheus.running(scrape_interval="1s") as prom, start_sims(specs, log_dir=workdir) as sims:
        for name, sim in zip(FLEET, sims, strict=True):
            ready_pod(cluster, NAMESPACE, f"{name}-0", {"app": name})
            cluster.apply([demo_backend(name, sim.port)], namespace=NAMESPACE)
        targets = {sim.address: f"{name}-0" for name, sim in zip(FLEET, sims, strict=True)}
        watch_prometheus(prom, NAMESPACE, targets)
        policy = demo_policy(prom.url)
        cluster.apply([policy], namespace=NAMESPACE)
        print(cluster.kubectl("get", "mb,rp", "-n", NAMESPACE).stdout, flush=True)
        step("starting the operator (ServiceAccount zeta-operator, manifests/operator/rbac.yaml)")
        operator = start_operator(cluster, NAMESPACE, workdir)
        try:
            configmap = policy["spec"]["routingTable"]["configMapName"]
            wait_for_table(cluster, configmap, namespace=NAMESPACE)
            step("starting the router (ServiceAccount zeta-router: reads one ConfigMap, nothing else)")
            with (
                router_identity(cluster, workdir) as kubeconfig,
                start_router(
                    configmap=f"{NAMESPACE}/{configmap}", kubeconfig=kubeconfig, log_dir=workdir
                ) as router,
            ):
                watch_prometheus_router(prom, f"127.0.0.1:{router.port}")
                yield Stack(cluster, prom, dict(zip(FLEET, sims, strict=True)), operator, router, policy)
        finally:
            operator.process.stop()

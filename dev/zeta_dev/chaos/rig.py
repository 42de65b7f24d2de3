"""The whole system as real processes, as the local demo runs it: etcd and kube-apiserver (RBAC on), a real
Prometheus, the demo's three simulated backends behind the sample ModelBackends and RoutingPolicy, the operator
and the router, each with its ServiceAccount token bound to the shipped RBAC. Every process (restarted ones
too) and the scratch directory are gone when the context ends, however it ends."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..demo.settings import FLEET, NAMESPACE, demo_backend, demo_policy, sample_manifest
from ..demo.stack import router_identity
from ..launch.router import RunningRouter, start_router
from ..launch.sim import RunningSim, SimSpec, start_sims
from ..localcluster.cluster import Cluster
from ..localcluster.controlplane import ControlPlane, control_plane_binaries
from ..localcluster.fleet import (
    OperatorProcess,
    condition,
    policy_status,
    read_table,
    ready_pod,
    set_pod_ready,
    start_operator,
    watch_prometheus,
)
from ..localcluster.processes import metric_samples
from ..localcluster.prometheus import Prometheus
from ..waiting import eventually
from .watcher import TableWatcher

POLICY = "demo"
CONFIGMAP = "zeta-routes-demo"  # the one ConfigMap the shipped router Role may read


@dataclass
class Rig:
    control_plane: ControlPlane
    cluster: Cluster
    prometheus: Prometheus
    sims: dict[str, RunningSim]
    operator: OperatorProcess
    router: RunningRouter
    watcher: TableWatcher
    workdir: Path
    namespace: str = NAMESPACE

    def restart_operator(self) -> None:
        self.operator.process.stop()  # a no-op after a kill
        self.operator = start_operator(self.cluster, self.namespace, self.workdir)

    def set_pod_ready(self, backend: str, ready: bool) -> None:
        set_pod_ready(self.cluster, self.namespace, f"{backend}-0", ready)

    def metrics_available(self) -> str | None:
        """The policy's MetricsAvailable status ("True"/"False"), None before the operator reported it."""
        found = condition(policy_status(self.cluster, self.namespace, POLICY), "MetricsAvailable")
        return None if found is None else str(found["status"])

    def operator_metric(self, name: str, **labels: str) -> float:
        return sum(metric_samples(self.operator.metrics(), name, labels))

    @contextlib.contextmanager
    def prometheus_frozen(self) -> Iterator[None]:
        """Prometheus stopped (SIGSTOP) inside the block: connections open, nothing answered."""
        process = self.prometheus.process
        assert process is not None
        os.kill(process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(process.pid, signal.SIGCONT)

    def weight(self, task_class: str, backend: str) -> float:
        """The backend's weight in the class, in the table the watcher saw last."""
        latest = self.watcher.latest()
        if latest is None or latest.table is None:
            return 0.0
        return next(c.weights.get(backend, 0.0) for c in latest.table.classes if c.name == task_class)

    def has_endpoints(self, backend: str) -> bool:
        latest = self.watcher.latest()
        table = None if latest is None else latest.table
        return table is not None and any(b.endpoints for b in table.backends if b.name == backend)


@contextlib.contextmanager
def running_rig(*, router_source: Path | None = None) -> Iterator[Rig]:
    """``router_source``: a source tree whose router runs instead of this checkout's (see `start_router`)."""
    workdir = Path(tempfile.mkdtemp(prefix="zeta-chaos-"))
    try:
        binaries = control_plane_binaries()
        # No kube-controller-manager: nothing here needs its loops, and two shared cores do not spare it.
        with ControlPlane.running(binaries=binaries, controllers=False) as cp:
            cluster = Cluster(kubeconfig=cp.kubeconfig, kubectl_binary=binaries / "kubectl")
            cluster.install_crds()
            cluster.kubectl("create", "namespace", NAMESPACE)
            cluster.kubectl("create", "serviceaccount", "default", "-n", NAMESPACE)  # the controller's job
            with _fleet(cp, cluster, workdir, router_source) as rig:
                yield rig
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _fleet(cp: ControlPlane, cluster: Cluster, workdir: Path, router_source: Path | None) -> Iterator[Rig]:
    specs = [SimSpec(model=sample_manifest(n)["spec"]["model"], size_b=s, max_seqs=m, seed=i)
             for i, (n, (s, m)) in enumerate(FLEET.items())]  # fmt: skip
    with Prometheus.running(scrape_interval="1s") as prom, start_sims(specs, log_dir=workdir) as started:
        sims = dict(zip(FLEET, started, strict=True))
        for name, sim in sims.items():
            ready_pod(cluster, NAMESPACE, f"{name}-0", {"app": name})
            cluster.apply([demo_backend(name, sim.port)], namespace=NAMESPACE)
        watch_prometheus(prom, NAMESPACE, {sim.address: f"{name}-0" for name, sim in sims.items()})
        policy = demo_policy(prom.url)
        policy["spec"]["adaptation"]["interval"] = "1s"  # more cycles in a short run, so more to interrupt
        cluster.apply([policy], namespace=NAMESPACE)
        watcher = TableWatcher(cluster, NAMESPACE, CONFIGMAP).start()
        operator = start_operator(cluster, NAMESPACE, workdir)
        rig: Rig | None = None
        try:
            eventually(lambda: read_table(cluster, NAMESPACE, CONFIGMAP), timeout=120, what="the first table")
            with (
                router_identity(cluster, workdir) as kubeconfig,
                start_router(
                    configmap=f"{NAMESPACE}/{CONFIGMAP}",
                    kubeconfig=kubeconfig,
                    log_dir=workdir,
                    source=router_source,
                ) as router,
            ):
                rig = Rig(cp, cluster, prom, sims, operator, router, watcher, workdir)
                yield rig
        finally:
            (rig.operator if rig else operator).process.stop()
            watcher.stop()

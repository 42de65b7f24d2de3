"""The local demo (``make demo``): Zeta end to end on this machine, then a summary and a plot.

Starts a real control plane (etcd, kube-apiserver, kube-controller-manager), a real Prometheus, three simulated
model servers (a 4B general model, a 7B coder, a 14B model), the operator and the router (each with a
ServiceAccount token bound to the shipped RBAC), applies the CRDs and the sample policy, and drives a mixed
workload with a burst of code requests that overloads the coder. Ctrl-C or the end leaves nothing running.

    python -m zeta_dev.demo            # about three minutes of workload (longer on a slow machine)
    python -m zeta_dev.demo --quick    # test-sized
    python -m zeta_dev.demo --node     # the same on a real node, Zeta installed with helm (root only)
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..launch.router import start_router
from ..launch.sim import SimSpec, start_sims
from ..localcluster.cluster import Cluster
from ..localcluster.controlplane import REPO_ROOT, ControlPlane, control_plane_binaries
from ..localcluster.fleet import ready_pod, start_operator, watch_prometheus
from ..localcluster.prometheus import Prometheus
from . import scenario
from .settings import FLEET, NAMESPACE, demo_backend, demo_policy, sample_manifest
from .show import run_show, step, wait_for_table


@contextlib.contextmanager
def router_identity(cluster: Cluster, workdir: Path) -> Iterator[Path]:
    cluster.kubectl("apply", "-f", str(REPO_ROOT / "manifests" / "router" / "rbac.yaml"))
    token = cluster.service_account_token(NAMESPACE, "zeta-router")
    yield cluster.kubeconfig_for_token(token, user="zeta-router", directory=workdir, namespace=NAMESPACE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a test-sized run (about 90 s of workload)")
    parser.add_argument(
        "--out", type=Path, default=Path("out/demo"), help="where summary.json and the PNG go"
    )
    parser.add_argument("--no-live", action="store_true", help="print progress lines instead of a live view")
    parser.add_argument(
        "--node",
        action="store_true",
        help="run on a real node (containerd, kubelet, kube-proxy; root only), Zeta installed by helm install",
    )
    args = parser.parse_args(argv)
    plan = scenario.quick() if args.quick else scenario.full()
    try:
        if args.node:
            from . import on_node

            return on_node.run(plan, out=args.out, live=not args.no_live)
        return run(plan, out=args.out, live=not args.no_live)
    except KeyboardInterrupt:
        print("\ninterrupted; everything stopped", flush=True)
        return 130


def run(plan: scenario.Scenario, *, out: Path, live: bool) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="zeta-demo-"))
    try:
        step("Kubernetes control plane binaries (built once from pinned Go modules, then cached)")
        binaries = control_plane_binaries()
        step("starting etcd, kube-apiserver (RBAC on) and kube-controller-manager")
        with ControlPlane.running(binaries=binaries) as cp:
            cluster = Cluster(kubeconfig=cp.kubeconfig, kubectl_binary=binaries / "kubectl")
            print(f"    KUBECONFIG={cp.kubeconfig}", flush=True)
            cluster.install_crds()
            cluster.kubectl("create", "namespace", NAMESPACE)
            return _with_fleet(cluster, plan, workdir=workdir, out=out, live=live)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        step("stopped; nothing left running")


def _with_fleet(cluster: Cluster, plan: scenario.Scenario, *, workdir: Path, out: Path, live: bool) -> int:
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
                run_show(cluster, NAMESPACE, policy, plan, router.url, out=out, live=live)
        finally:
            operator.process.stop()
    return 0


def watch_prometheus_router(prom: Prometheus, address: str) -> None:
    prom.set_targets(
        "router", {address: {"namespace": NAMESPACE, "pod": "zeta-router-0", "container": "router"}}
    )


if __name__ == "__main__":
    sys.exit(main())

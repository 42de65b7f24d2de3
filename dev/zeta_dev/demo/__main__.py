"""The local demo (``make demo``): Zeta end to end on this machine, then a summary and a plot.

Starts a real control plane (etcd, kube-apiserver, kube-controller-manager), a real Prometheus, three simulated
model servers (a 4B general model, a 7B coder, a 14B model), the operator and the router (each with a
ServiceAccount token bound to the shipped RBAC), applies the CRDs and the sample policy, and drives a mixed
workload with a burst of code requests that overloads the coder. Ctrl-C or the end leaves nothing running.

    python -m zeta_dev.demo            # about three minutes of workload (longer on a slow machine)
    python -m zeta_dev.demo --quick    # test-sized
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from zeta_operator.api.common import parse_duration

from ..launch.router import start_router
from ..launch.sim import SimSpec, start_sims
from ..localcluster.cluster import Cluster
from ..localcluster.controlplane import REPO_ROOT, ControlPlane, control_plane_binaries
from ..localcluster.fleet import (
    list_objects,
    policy_status,
    read_table,
    ready_pod,
    start_operator,
    watch_prometheus,
)
from ..localcluster.prometheus import Prometheus
from ..waiting import eventually
from . import report, scenario
from .view import LiveView

OFFLOADED_BELOW = 0.5
"""The burst is being offloaded once the preferred backend's weight for the burst class is below this."""
RECOVERED_ABOVE = 0.8
"""...and has recovered once it is back above this."""
NAMESPACE = "zeta-system"  # where manifests/ puts the operator and the router
SAMPLES = REPO_ROOT / "manifests" / "samples"
FLEET = {  # sample backend -> simulated engine (size in billions, concurrent sequences)
    "general-4b": (4, 16),
    "coder-7b": (7, 6),
    "large-14b": (14, 6),
}


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def sample_manifest(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / f"{name}.yaml").read_text())
    return doc


def demo_backend(name: str, port: int) -> dict[str, Any]:
    """The sample backend, reached through its (simulated) pod instead of a Service: EndpointSlices may not
    point at 127.0.0.1, pods' status may."""
    doc = sample_manifest(name)
    doc["spec"]["endpoints"] = {"selector": {"matchLabels": {"app": name}, "port": port}}
    doc["spec"]["capacity"] = {"maxConcurrency": FLEET[name][1] + 2}
    return doc


def demo_policy(prometheus_url: str) -> dict[str, Any]:
    doc = copy.deepcopy(sample_manifest("routingpolicy"))
    doc["spec"]["prometheus"] = {"address": prometheus_url, "timeout": "1s", "window": "10s"}
    doc["spec"]["adaptation"] = {"interval": "2s", "staleAfter": "30s", "smoothing": 0.6, "maxStep": 0.25,
                                 "blackout": "2s"}  # fmt: skip
    # Engine queue depth is the overload signal here; latency counts as full load only at 1.5x the objective,
    # because the 14B model is slower than a tight objective even when idle (slow is not busy).
    doc["spec"]["thresholds"] = {"queueDepth": 2, "latency": 1.5}
    return doc


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
    args = parser.parse_args(argv)
    try:
        return run(scenario.quick() if args.quick else scenario.full(), out=args.out, live=not args.no_live)
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
        preferred = next(
            c["preferred"][0] for c in policy["spec"]["classes"] if c["name"] == plan.burst_class
        )
        try:
            configmap = policy["spec"]["routingTable"]["configMapName"]
            wait_for_table(cluster, configmap)
            step("starting the router (ServiceAccount zeta-router: reads one ConfigMap, nothing else)")
            with (
                router_identity(cluster, workdir) as kubeconfig,
                start_router(
                    configmap=f"{NAMESPACE}/{configmap}", kubeconfig=kubeconfig, log_dir=workdir
                ) as router,
            ):
                watch_prometheus_router(prom, f"127.0.0.1:{router.port}")
                step(f"workload: {plan.warmup:.0f}s steady; a burst of {plan.burst_class} x{plan.burst_factor:g} "
                     f"for at least {plan.burst:.0f}s, until it has been offloaded for {plan.hold:.0f}s; then "
                     f"at least {plan.cooldown:.0f}s steady, until {preferred} has its share back")  # fmt: skip
                view = LiveView(
                    cluster, NAMESPACE, "demo", configmap, phase=lambda: phases.current, live=live
                )

                def share() -> float:
                    seen = view.share(plan.burst_class, preferred)
                    return float("nan") if seen is None else seen

                phases = scenario.Phases(
                    plan,
                    offloading=lambda: share() < OFFLOADED_BELOW,
                    recovered=lambda: share() > RECOVERED_ABOVE,
                )
                outcomes, timeline = asyncio.run(_drive(plan, phases, router.url, view))
                _print_signals(cluster)
        finally:
            operator.process.stop()
        objectives = {c["name"]: parse_duration(c["latencyObjective"]) for c in policy["spec"]["classes"]}
        summary = report.summarize(
            outcomes, timeline, objectives, burst_class=plan.burst_class, preferred=preferred, phases=phases
        )
        report.print_summary(summary)
        for path in report.write(out, summary, timeline, outcomes):
            print(f"wrote {path}")
    return 0


def _print_signals(cluster: Cluster) -> None:
    """What the operator measured last, per backend: the numbers behind the weights."""
    print(cluster.kubectl("get", "mb,rp", "-n", NAMESPACE).stdout, flush=True)
    for mb in list_objects(cluster, "modelbackends", NAMESPACE):
        signals = (mb.get("status") or {}).get("signals", {})
        shown = "  ".join(f"{k}={v['value']:.2f}" if v.get("value") is not None else f"{k}={v['state']}"
                          for k, v in sorted(signals.items()))  # fmt: skip
        print(f"    {mb['metadata']['name']:<11} {shown}", flush=True)


def watch_prometheus_router(prom: Prometheus, address: str) -> None:
    prom.set_targets(
        "router", {address: {"namespace": NAMESPACE, "pod": "zeta-router-0", "container": "router"}}
    )


async def _drive(
    plan: scenario.Scenario, phases: scenario.Phases, url: str, view: LiveView
) -> tuple[list[Any], report.Timeline]:
    from .workload import run as run_workload

    watcher = asyncio.create_task(view.run())
    try:
        outcomes = await run_workload(plan, phases, url)
    finally:
        view.stop()
        await watcher
    return outcomes, view.timeline


def wait_for_table(cluster: Cluster, configmap: str, timeout: float = 60) -> None:
    """Until the operator has written the routing table ``configmap`` in the demo namespace."""
    eventually(
        lambda: read_table(cluster, NAMESPACE, configmap),
        timeout=timeout,
        what=f"the operator's routing table {NAMESPACE}/{configmap}",
        every=0.5,
    )
    status = policy_status(cluster, NAMESPACE, "demo")
    print(f"    routing table written: {status.get('weightsSummary', '')}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

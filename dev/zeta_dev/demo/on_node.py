"""The demo on a real node (``python -m zeta_dev.demo --node``, root only): the same workload, live view, summary
and plot as the process demo, with Zeta installed as a user installs it: `helm install` of charts/zeta with the
image built from the Dockerfile, the model servers simulator Deployments behind Services (their Pod IPs in the
EndpointSlices), `kubectl apply -k` of the samples with the demo's settings, requests sent to the router's
Service. The node harness is `zeta_dev.localcluster.node`; docs/node.md says what runs."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

from ..localcluster import node as node_harness
from ..localcluster.zeta_on_node import (
    Installed,
    apply_samples,
    deploy_fleet,
    endpoint_slice_addresses,
    installed,
)
from ..waiting import eventually
from . import scenario
from .settings import FLEET, NAMESPACE, demo_policy, sample_overrides
from .show import run_show, step, wait_for_table

REPLICAS = 1
"""One engine per backend, as in the process demo: the same capacity, so the same story."""


def run(plan: scenario.Scenario, *, out: Path, live: bool) -> int:
    reason = node_harness.unsupported_reason()
    if reason:
        print(f"demo --node: {reason}. The process demo (without --node) runs as any user.", file=sys.stderr)
        return 2
    step("Debian packages, kubelet, kube-proxy, kube-scheduler and the images (built once, then cached)")
    node_harness.install_packages()
    binaries = node_harness.node_binaries()
    images = node_harness.build_images()
    step(
        "starting a node: containerd, CNI bridge, kubelet, kube-proxy, kube-scheduler (next to the control plane)"
    )
    try:
        with installed(
            binaries, images, namespace=NAMESPACE, engines=FLEET, replicas=REPLICAS, spec=sample_overrides(),
            on_step=lambda name, seconds: print(f"    {name} after {seconds:.0f} s", flush=True),
        ) as zeta:  # fmt: skip
            print(f"    KUBECONFIG={zeta.node.cluster.kubeconfig}", flush=True)
            run_on(zeta, plan, out=out, live=live)
    finally:
        step("stopped; node torn down, nothing left running")
    return 0


def run_on(zeta: Installed, plan: scenario.Scenario, *, out: Path, live: bool) -> dict[str, Any]:
    """The demo on a node where Zeta is installed (by `run`, or otherwise: the node tests'). Applies the demo's
    simulators and settings first (a rollout where they differ), and starts once the routing table lists the
    simulators' Pods. Returns the summary."""
    node = zeta.node
    deploy_fleet(node, zeta.images["zeta-sim"], namespace=zeta.namespace, replicas=REPLICAS, engines=FLEET)
    apply_samples(node, namespace=zeta.namespace, prometheus_url=zeta.prometheus.url, spec=sample_overrides())
    policy = demo_policy(zeta.prometheus.url)
    wait_for_table(node.cluster, policy["spec"]["routingTable"]["configMapName"], namespace=zeta.namespace)
    for backend in FLEET:
        eventually(
            functools.partial(_table_lists_the_pods, zeta, backend),
            timeout=120,
            what=f"the routing table listing the Pods of {backend}",
        )
    print(node.cluster.kubectl("get", "pods,svc", "-n", zeta.namespace, "-o", "wide").stdout, flush=True)
    return run_show(node.cluster, zeta.namespace, policy, plan, zeta.router_url, out=out, live=live)


def _table_lists_the_pods(zeta: Installed, backend: str) -> bool:
    pods = endpoint_slice_addresses(zeta.node, namespace=zeta.namespace, service=backend)
    return bool(pods) and zeta.table_endpoints(backend) == pods

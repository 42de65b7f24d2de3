"""One operator at scale on the real apiserver and a real Prometheus: 200 backends across 20 policies.

Measured side by side in one run: the same operator process first with 1 policy of 10 backends (the baseline),
then with all 20 policies of 10 backends each. Reported: PromQL queries per control interval, Kubernetes API
requests per policy cycle (from the API server's own `apiserver_request_total`, watches left out, by resource and
verb), cycle wall time (mean per policy cycle, from the operator's own histogram), operator RSS, table writes. Backends are selector
backends over Pod objects (Ready at 127.0.0.1, no kubelet); 20 of them have a live simulator behind them, the rest
answer no data, which costs the operator the same queries.

    python -m bench.bench_operator [--policies 20] [--backends-per-policy 10] [--seconds 40]
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import kubernetes

from zeta_dev.launch.sim import SimSpec, start_sims
from zeta_dev.localcluster.cluster import Cluster
from zeta_dev.localcluster.controlplane import ControlPlane, control_plane_binaries
from zeta_dev.localcluster.fleet import (
    OperatorProcess,
    policy_status,
    ready_pod,
    start_operator,
    watch_prometheus,
)
from zeta_dev.localcluster.prometheus import Prometheus
from zeta_operator.api.common import GROUP, VERSION

NS = "bench"


def backend(name: str, label: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelBackend",
        "metadata": {"name": name, "labels": {"fleet": label}},
        "spec": {
            "model": name,
            "sizeBillions": 7,
            "endpoints": {"selector": {"matchLabels": {"app": name}, "port": 8000}},
            "capabilities": {"tasks": ["chat", "code"], "maxComplexity": 4},
        },
    }


def policy(name: str, label: str, members: list[str], prometheus: str) -> dict[str, Any]:
    half = len(members) // 2
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RoutingPolicy",
        "metadata": {"name": name},
        "spec": {
            "backends": {"selector": {"matchLabels": {"fleet": label}}},
            "routingTable": {"configMapName": f"routes-{name}"},
            "classes": [
                {
                    "name": "chat",
                    "taskType": "chat",
                    "complexity": {"min": 1, "max": 4},
                    "preferred": members[:half],
                    "fallbacks": members[half:],
                },
                {
                    "name": "code",
                    "taskType": "code",
                    "complexity": {"min": 1, "max": 4},
                    "preferred": members[half:],
                    "fallbacks": members[:half],
                },
            ],
            "prometheus": {"address": prometheus, "timeout": "2s", "window": "10s"},
            "adaptation": {"interval": "2s", "staleAfter": "60s"},
        },
    }


OPERATOR_RESOURCES = {"pods", "endpointslices", "configmaps", "routingpolicies", "modelbackends", "events"}
"""What the operator reads and writes; nothing else touches them in the bench namespace while it measures."""


def api_requests(cluster: Cluster) -> dict[str, float]:
    """Requests the API server has answered so far, by "VERB resource[/subresource]" (watches left out: one
    long-lived watch is not a per-cycle cost)."""
    text = cluster.kubectl("get", "--raw", "/metrics").stdout
    out: dict[str, float] = {}
    for labels, value in re.findall(r"^apiserver_request_total{([^}]*)} ([0-9.e+]+)$", text, re.M):
        fields = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if fields.get("resource") not in OPERATOR_RESOURCES or fields.get("verb") in ("WATCH", "CONNECT"):
            continue
        key = f"{fields['verb']} {fields['resource']}" + (
            f"/{fields['subresource']}" if fields.get("subresource") else ""
        )
        if not fields.get("code", "").startswith("2"):
            key += f" ({fields.get('code')})"  # refused: a conflict from a stale view would show here
        out[key] = out.get(key, 0.0) + float(value)
    return out


def scrape(op: OperatorProcess) -> dict[str, float]:
    text = op.metrics()

    def total(metric: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{metric}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M))

    return {
        "queries": total("zeta_operator_prometheus_queries_total"),
        "cycles": total("zeta_operator_cycle_duration_seconds_count"),
        "cycle_seconds": total("zeta_operator_cycle_duration_seconds_sum"),
        "writes": total("zeta_operator_table_writes_total"),
    }


def require_ready(cluster: Cluster, policies: list[str]) -> None:
    """Measure only working cycles: every policy must have written its table (Ready=True)."""
    for name in policies:
        status = policy_status(cluster, NS, name)
        ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
        if ready.get("status") != "True":
            raise SystemExit(f"policy {name} is not Ready: {status.get('conditions')}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(cluster: Cluster, op: OperatorProcess, seconds: float, interval: float) -> dict[str, Any]:
    time.sleep(2 * interval)  # let the first cycles (table creation) pass
    before, api_before = scrape(op), api_requests(cluster)
    time.sleep(seconds)
    after, api_after = scrape(op), api_requests(cluster)
    delta = {k: after[k] - before[k] for k in after}
    cycles = max(delta["cycles"], 1)
    api = {
        k: (v - api_before.get(k, 0.0)) / cycles for k, v in api_after.items() if v > api_before.get(k, 0.0)
    }
    return {
        "api_per_cycle": sum(api.values()),
        "api_by_kind": dict(sorted(api.items(), key=lambda kv: -kv[1])),
        "queries_per_interval": delta["queries"] / (seconds / interval),
        "cycles": delta["cycles"],
        "mean_cycle_ms": 1000 * delta["cycle_seconds"] / max(delta["cycles"], 1),
        "writes": delta["writes"],
        "rss_mib": rss_mib(op.process.pid),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policies", type=int, default=20)
    parser.add_argument("--backends-per-policy", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=40)
    args = parser.parse_args()
    interval = 2.0
    binaries = control_plane_binaries()
    workdir = Path(tempfile.mkdtemp(prefix="zeta-bench-"))
    try:
        with ControlPlane.running(binaries=binaries) as cp, Prometheus.running(scrape_interval="2s") as prom:
            cluster = Cluster(kubeconfig=cp.kubeconfig, kubectl_binary=binaries / "kubectl")
            cluster.install_crds()
            kubernetes.client.CoreV1Api(cluster.api_client()).create_namespace({"metadata": {"name": NS}})
            specs = [SimSpec(model=f"sim{i}", size_b=7, seed=i) for i in range(args.policies)]
            with start_sims(specs, log_dir=workdir) as sims:
                groups = []
                for p in range(args.policies):
                    members = [f"p{p:02d}-b{b:02d}" for b in range(args.backends_per_policy)]
                    for name in members:
                        ready_pod(cluster, NS, f"{name}-0", {"app": name})
                    cluster.apply([backend(n, f"f{p}") for n in members], namespace=NS)
                    groups.append((f"policy-{p:02d}", f"f{p}", members))
                # One live simulator per policy (its first backend's pod); the others answer no data.
                watch_prometheus(
                    prom, NS, {sim.address: f"{groups[i][2][0]}-0" for i, sim in enumerate(sims)}
                )
                op = start_operator(cluster, NS, workdir)
                try:
                    name, label, members = groups[0]
                    cluster.apply([policy(name, label, members, prom.url)], namespace=NS)
                    baseline = measure(cluster, op, args.seconds, interval)
                    require_ready(cluster, [name])
                    cluster.apply([policy(n, lb, m, prom.url) for n, lb, m in groups[1:]], namespace=NS)
                    scaled = measure(cluster, op, args.seconds, interval)
                    require_ready(cluster, [g[0] for g in groups])
                finally:
                    op.process.stop()
        report(args, baseline, scaled)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def report(args: argparse.Namespace, baseline: dict[str, Any], scaled: dict[str, Any]) -> None:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    n = args.policies * args.backends_per_policy
    print(
        f"machine: {platform.node()}, {cpu}, python {platform.python_version()}, {time.strftime('%Y-%m-%d')}"
    )
    print(f"| setup | PromQL queries per interval | API requests per policy cycle | mean cycle per policy | "
          f"cycles in {args.seconds:.0f}s | table writes | operator RSS |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    rows = [(f"1 policy, {args.backends_per_policy} backends (baseline)", baseline),
            (f"{args.policies} policies, {n} backends", scaled)]  # fmt: skip
    for label, r in rows:
        print(f"| {label} | {r['queries_per_interval']:.1f} | {r['api_per_cycle']:.2f} | {r['mean_cycle_ms']:.1f} ms | "
              f"{r['cycles']:.0f} | {r['writes']:.0f} | {r['rss_mib']:.0f} MiB |")  # fmt: skip
    for label, r in rows:
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in r["api_by_kind"].items())
        print(f"API requests per policy cycle, {label}: {kinds}")
    print(
        f"ratios (scaled / baseline): queries {scaled['queries_per_interval'] / baseline['queries_per_interval']:.1f}x, "
        f"cycle time {scaled['mean_cycle_ms'] / baseline['mean_cycle_ms']:.2f}x, RSS {scaled['rss_mib'] / baseline['rss_mib']:.2f}x"
    )


if __name__ == "__main__":
    main()

"""The demo once Zeta serves, wherever it runs (processes or a node): the workload through the router, the live
view, the operator's last signals, then the summary and the plot."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from zeta_operator.api.common import parse_duration

from ..localcluster.cluster import Cluster
from ..localcluster.fleet import list_objects, policy_status, read_table
from ..waiting import eventually
from . import report, scenario
from .view import LiveView

OFFLOADED_BELOW = 0.8
"""The burst is being offloaded once the preferred backend's weight for the burst class is below this: a fifth of
its share moved away (from the 0.96 it holds beside the fallbacks' probing floor). Not lower: the operator moves
weight only while the preferred backend is above the high watermark, so once the offload brings it back inside
the hysteresis band the share rests wherever that happened (0.76 in a node run, where waiting for 0.5 made the
burst last until noise pushed the coder over the watermark again, 30 s later)."""
RECOVERED_ABOVE = 0.9
"""...and has recovered once it is back above this."""


def step(message: str) -> None:
    print(f"==> {message}", flush=True)


def run_show(
    cluster: Cluster,
    namespace: str,
    policy: dict[str, Any],
    plan: scenario.Scenario,
    router_url: str,
    *,
    out: Path,
    live: bool,
) -> dict[str, Any]:
    """Drive ``plan`` through the router at ``router_url`` while watching ``policy`` (as applied in
    ``namespace``); print the summary, write it and the plot to ``out`` and return it."""
    name, configmap = policy["metadata"]["name"], policy["spec"]["routingTable"]["configMapName"]
    preferred = next(c["preferred"][0] for c in policy["spec"]["classes"] if c["name"] == plan.burst_class)
    step(f"workload: {plan.warmup:.0f}s steady; a burst of {plan.burst_class} x{plan.burst_factor:g} "
         f"for at least {plan.burst:.0f}s, until it has been offloaded for {plan.hold:.0f}s; then "
         f"at least {plan.cooldown:.0f}s steady, until {preferred} has its share back")  # fmt: skip
    view = LiveView(cluster, namespace, name, configmap, phase=lambda: phases.current, live=live)

    def share() -> float:
        seen = view.share(plan.burst_class, preferred)
        return float("nan") if seen is None else seen

    phases = scenario.Phases(
        plan, offloading=lambda: share() < OFFLOADED_BELOW, recovered=lambda: share() > RECOVERED_ABOVE
    )
    outcomes, timeline = asyncio.run(_drive(plan, phases, router_url, view))
    print_signals(cluster, namespace)
    objectives = {c["name"]: parse_duration(c["latencyObjective"]) for c in policy["spec"]["classes"]}
    summary = report.summarize(
        outcomes, timeline, objectives, burst_class=plan.burst_class, preferred=preferred, phases=phases
    )
    report.print_summary(summary)
    for path in report.write(out, summary, timeline, outcomes):
        print(f"wrote {path}")
    return summary


def print_signals(cluster: Cluster, namespace: str) -> None:
    """What the operator measured last, per backend: the numbers behind the weights."""
    print(cluster.kubectl("get", "mb,rp", "-n", namespace).stdout, flush=True)
    for mb in list_objects(cluster, "modelbackends", namespace):
        signals = (mb.get("status") or {}).get("signals", {})
        shown = "  ".join(f"{k}={v['value']:.2f}" if v.get("value") is not None else f"{k}={v['state']}"
                          for k, v in sorted(signals.items()))  # fmt: skip
        print(f"    {mb['metadata']['name']:<11} {shown}", flush=True)


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


def wait_for_table(cluster: Cluster, configmap: str, *, namespace: str, timeout: float = 60) -> None:
    """Until the operator has written the routing table ``configmap`` in ``namespace``."""
    eventually(
        lambda: read_table(cluster, namespace, configmap),
        timeout=timeout,
        what=f"the operator's routing table {namespace}/{configmap}",
        every=0.5,
    )
    status = policy_status(cluster, namespace, "demo")
    print(f"    routing table written: {status.get('weightsSummary', '')}", flush=True)

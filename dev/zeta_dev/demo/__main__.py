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
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from zeta_operator.api.common import parse_duration

from ..localcluster.cluster import Cluster
from ..localcluster.fleet import list_objects
from . import report, scenario

# FLEET, demo_backend, ... are imported here too because bench/routing/real.py still takes them from this module
# (they moved to .stack so that the soak can start the same system).
from .stack import (  # noqa: F401
    FLEET,
    NAMESPACE,
    POLICY,
    Stack,
    demo_backend,
    demo_policy,
    router_identity,
    running_stack,
    sample_manifest,
    step,
    wait_for_table,
    watch_prometheus_router,
)
from .view import LiveView

OFFLOADED_BELOW = 0.5
"""The burst is being offloaded once the preferred backend's weight for the burst class is below this."""
RECOVERED_ABOVE = 0.8
"""...and has recovered once it is back above this."""


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
        with running_stack(workdir) as stack:
            return _with_stack(stack, plan, out=out, live=live)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        step("stopped; nothing left running")


def _with_stack(stack: Stack, plan: scenario.Scenario, *, out: Path, live: bool) -> int:
    cluster, policy = stack.cluster, stack.policy
    preferred = next(c["preferred"][0] for c in policy["spec"]["classes"] if c["name"] == plan.burst_class)
    step(f"workload: {plan.warmup:.0f}s steady; a burst of {plan.burst_class} x{plan.burst_factor:g} "
         f"for at least {plan.burst:.0f}s, until it has been offloaded for {plan.hold:.0f}s; then "
         f"at least {plan.cooldown:.0f}s steady, until {preferred} has its share back")  # fmt: skip
    view = LiveView(cluster, NAMESPACE, POLICY, stack.configmap, phase=lambda: phases.current, live=live)

    def share() -> float:
        seen = view.share(plan.burst_class, preferred)
        return float("nan") if seen is None else seen

    phases = scenario.Phases(
        plan,
        offloading=lambda: share() < OFFLOADED_BELOW,
        recovered=lambda: share() > RECOVERED_ABOVE,
    )
    outcomes, timeline = asyncio.run(_drive(plan, phases, stack.router.url, view))
    _print_signals(cluster)
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


if __name__ == "__main__":
    sys.exit(main())

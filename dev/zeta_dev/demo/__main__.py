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
import shutil
import sys
import tempfile
from pathlib import Path

from . import scenario
from .settings import NAMESPACE
from .show import run_show, step
from .stack import running_stack


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
        with running_stack(workdir) as stack:
            run_show(stack.cluster, NAMESPACE, stack.policy, plan, stack.router.url, out=out, live=live)
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        step("stopped; nothing left running")


if __name__ == "__main__":
    sys.exit(main())

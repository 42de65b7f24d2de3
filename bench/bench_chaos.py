"""Chaos, counted (issue 11): steady load through the router while a part of the system dies, one at a time.

Real processes throughout (see `zeta_dev.chaos`): etcd and kube-apiserver with RBAC, Prometheus, three simulated
backends behind the sample policy, the operator and the router with their shipped RBAC. Load: ``--rate``
requests per second through the router on fresh connections, every fourth one streamed. Faults, in turn:

- backend:    a simulator SIGKILLed (its pod stays Ready), left dead, then started again on its port;
- operator:   the operator SIGKILLed right after a table write, before that cycle's status report; restarted;
- apiserver:  kube-apiserver SIGKILLed and started again on the same port and etcd;
- prometheus: Prometheus SIGKILLed and started again.

A baseline row (no fault, same load) runs first. A watcher on the routing-table ConfigMap checks every version
written (parses as the router loads it, every class has a capable weighted backend with endpoints).

    python -m bench.bench_chaos                         # every fault, 10 s each
    python -m bench.bench_chaos --fault apiserver --seconds 30
    git archive 1dfa146 zeta_operator | tar -x -C /tmp/chaos-before   # the router before the retry fix
    python -m bench.bench_chaos --fault backend --router-source /tmp/chaos-before

Prints a markdown table: per fault, requests sent from the fault until recovery, answered, retried by the
router (X-Zeta-Retries), failed, failed before the first byte, streams, and the time to recover.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from collections import Counter
from pathlib import Path

from zeta_dev.chaos.faults import FAULTS, Dwell, FaultRun, run_fault
from zeta_dev.chaos.load import SteadyLoad
from zeta_dev.chaos.rig import running_rig


def run(
    faults: list[str], how: Dwell, rate: float, router_source: Path | None
) -> tuple[list[FaultRun], list[str], int, set[int]]:
    """The runs, the watcher's problems, how many table states it saw, and versions the router served that
    the watcher never saw."""
    with running_rig(router_source=router_source) as rig, SteadyLoad(rig.router.url, rate=rate) as load:
        runs = []
        for name in ["baseline", *faults]:
            runs.append(run_fault(name, rig, load, how))
            print(f"# {name}: done", file=sys.stderr, flush=True)
            for o in runs[-1].outcomes:
                if o.failed_before_first_byte:
                    print(f"#   failed before the first byte: {o}", file=sys.stderr, flush=True)
        served = {o.table_version for r in runs for o in r.outcomes if o.table_version is not None}
        unseen = served - set(rig.watcher.versions())
        return runs, rig.watcher.problems(), len(rig.watcher.seen), unseen


def row(r: FaultRun) -> str:
    c = r.counts
    errors = Counter(o.error.split(":")[0] for o in r.outcomes if not o.answered)
    detail = ", ".join(f"{n} {kind or 'cut stream'}" for kind, n in errors.most_common(3))
    return (f"| {r.fault} | {c.sent} | {c.answered} | {c.retried} | {c.failed}" + (f" ({detail})" if detail else "")
            + f" | {c.failed_before_first_byte} | {c.streams_answered}/{c.streams} | {r.recovery_seconds:.1f} "
            f"| {r.recovered} |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fault", choices=["all", *FAULTS], default="all")
    p.add_argument("--seconds", type=float, default=10.0, help="how long each fault lasts (default 10)")
    p.add_argument("--rate", type=float, default=8.0, help="requests per second (default 8)")
    p.add_argument(
        "--router-source", type=Path, help="a source tree whose router runs instead of this checkout's"
    )
    args = p.parse_args()
    faults = list(FAULTS) if args.fault == "all" else [args.fault]
    print(f"# {platform.node()}: {os.cpu_count()} CPUs, load {os.getloadavg()}", file=sys.stderr)
    runs, problems, states, unseen = run(
        faults, Dwell(requests=10, seconds=args.seconds), args.rate, args.router_source
    )
    print("| fault | sent | answered | retried | failed | failed before first byte | streams answered "
          "| recovery s | recovered when |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(row(r))
    print(f"\nRouting-table states watched: {states}; invalid or empty: {len(problems)}; "
          f"versions the router served that the watcher never saw: {len(unseen)}")  # fmt: skip
    for problem in problems:
        print(f"- {problem}")
    print(f"# load after: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()

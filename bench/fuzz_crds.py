"""Fuzz the custom resources: specs generated from the CRD schemas (valid by schema, coherent, and near-valid
mutations) applied to a real kube-apiserver, judged by the operator's own validation and table builder, and a
sample of them run through a real operator process.

    python -m bench.fuzz_crds --cases 1000 --operator-cases 30     # about 10 minutes on 2 shared cores
    python -m bench.fuzz_crds --cases 100 --operator-cases 5

Prints, as Markdown for docs/fuzzing.md: outcomes per generation mode (rejected at apply time, InvalidSpec,
table), the real operator's agreement on its sample, and every distinct finding with a reproducer. Exits 1
when anything was found.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings

from zeta_dev.localcluster.cluster import Cluster
from zeta_dev.localcluster.controlplane import ControlPlane, control_plane_binaries

from .fuzz.operator_run import run_through_operator
from .fuzz.resources import Case, Tally, apply_dry_run, cases, judge


@contextlib.contextmanager
def a_cluster(kubeconfig: Path | None) -> Iterator[Cluster]:
    if kubeconfig is not None:
        yield Cluster(kubeconfig=kubeconfig)
        return
    binaries = control_plane_binaries()
    with ControlPlane.running(binaries=binaries) as cp:
        yield Cluster(kubeconfig=cp.kubeconfig, kubectl_binary=binaries / "kubectl")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz_crds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="generated cases (default %(default)s)")
    parser.add_argument("--operator-cases", type=int, default=30, help="of which through the real operator")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--kubeconfig", type=Path, help="an existing cluster instead of the local control plane"
    )
    args = parser.parse_args(argv)
    started = time.monotonic()
    with a_cluster(args.kubeconfig) as cluster:
        cluster.install_crds()
        api = cluster.api_client()
        namespace = f"fuzz-{uuid.uuid4().hex[:6]}"
        core = kubernetes.client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": namespace}})
        tally, sample = Tally(), []

        @settings(max_examples=args.cases, database=None, deadline=None, phases=[Phase.generate],
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @seed(args.seed)
        @given(cases())
        def one(case: Case) -> None:
            backends, policy, rejections = apply_dry_run(api, namespace, case)
            verdict = judge(case, policy, backends, rejections)
            tally.record(case, verdict, len(backends))
            # two thirds that should make a table, one third InvalidSpec
            wanted = {
                "table": args.operator_cases - args.operator_cases // 3,
                "invalid": args.operator_cases // 3,
            }
            if sum(1 for _, v in sample if v.outcome == verdict.outcome) < wanted.get(verdict.outcome, 0):
                sample.append((case, verdict))
            if tally.total % 100 == 0:
                print(f"{tally.total} cases", file=sys.stderr)

        one()
        generated = time.monotonic() - started
        with tempfile.TemporaryDirectory(prefix="zeta-fuzz-crds-") as work:
            agreement = run_through_operator(cluster, sample, Path(work))
        core.delete_namespace(namespace)
    report(tally, agreement, args, generated, time.monotonic() - started)
    bad = tally.findings or any(a.problem for a in agreement)
    return 1 if bad else 0


def report(tally: Tally, agreement: list, args: argparse.Namespace, generated: float, elapsed: float) -> None:
    print(f"## Custom-resource fuzzing: `python -m bench.fuzz_crds --cases {args.cases} "
          f"--operator-cases {args.operator_cases} --seed {args.seed}`\n")  # fmt: skip
    print(f"{tally.total} cases (each a RoutingPolicy and 1-4 ModelBackends) in {generated:.0f} s, the operator "
          f"sample in {elapsed - generated:.0f} s. ModelBackends: {tally.backends_accepted} accepted, "
          f"{tally.backends_rejected} rejected at apply time.\n")  # fmt: skip
    print("| mode | cases | rejected at apply | InvalidSpec | table |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for mode in ("schema", "coherent", "mutated"):
        row = [tally.outcomes[(mode, o)] for o in ("rejected", "invalid", "table")]
        print(f"| {mode} | {sum(row)} | " + " | ".join(map(str, row)) + " |")
    totals = [
        sum(n for (_, o), n in tally.outcomes.items() if o == k) for k in ("rejected", "invalid", "table")
    ]
    print(f"| **all** | **{sum(totals)}** | " + " | ".join(f"**{n}**" for n in totals) + " |\n")
    agreed = sum(1 for a in agreement if not a.problem)
    print(
        f"Real operator process: {len(agreement)} accepted cases applied for real; {agreed} ended as the "
        f"in-process judgement said ("
        + ", ".join(f"{o}: {sum(1 for a in agreement if a.expected == o)}" for o in ("invalid", "table"))
        + "), every written table valid and non-empty.\n"
    )
    transient = [a for a in agreement if not a.problem and a.first != a.actual]
    if transient:
        print(f"Of those, {len(transient)} were first reported {transient[0].first} by the operator, before "
              "its next cycle saw the backends created with the policy (docs/fuzzing.md, finding 3).\n")  # fmt: skip
    problems = [a for a in agreement if a.problem]
    findings = list(tally.findings.items())
    print(f"Findings: {len(findings) + len(problems)} distinct" + (":" if findings or problems else "."))
    for text, (count, case) in findings:
        print(
            f"\n- **{text}** ({count} cases); first case{' (' + case.mutation + ')' if case.mutation else ''}:\n"
        )
        print("  ```yaml\n" + _indent(yaml.safe_dump_all(case.documents(), sort_keys=False)) + "  ```")
    for a in problems:
        print(f"\n- **real operator: {a.problem}**:\n\n  ```yaml\n"
              + _indent(yaml.safe_dump_all(a.case.documents(), sort_keys=False)) + "  ```")  # fmt: skip


def _indent(text: str) -> str:
    return "".join("  " + line + "\n" for line in text[:6000].splitlines())


if __name__ == "__main__":
    sys.exit(main())

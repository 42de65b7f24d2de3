"""The CI slice of `python -m bench.fuzz_crds`: custom resources generated from the CRD schemas (valid by
schema, made coherent, and near-valid mutations; hypothesis derandomized), applied to the real apiserver (a
server-side dry run with strict field validation, as kubectl apply), judged the way the operator judges them.

Every case is rejected at apply time, or reported invalid by the operator's own checks, or produces a routing
table that is valid, non-empty and loadable by the router; the CRD schema and the models never disagree. A few
accepted cases also go through a real operator process, which must end each as the in-process judgement does.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from zeta_dev.localcluster.cluster import Cluster

# bench/ is not an installed package: it runs from a checkout, so the test imports it from the checkout too.
_REPO = str(Path(__file__).resolve().parents[2])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from bench.fuzz.operator_run import run_through_operator  # noqa: E402
from bench.fuzz.resources import Case, Tally, Verdict, apply_dry_run, cases, judge  # noqa: E402

CASES = 100
OPERATOR_CASES = 4

pytestmark = pytest.mark.controlplane


@pytest.fixture(scope="module")
def fuzz_namespace(crds: Cluster) -> Iterator[str]:
    name = f"fuzz-{uuid.uuid4().hex[:6]}"
    core = kubernetes.client.CoreV1Api(crds.api_client())
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


def test_generated_resources_are_rejected_invalid_or_make_a_good_table(
    crds: Cluster, fuzz_namespace: str, tmp_path: Path
) -> None:
    api = crds.api_client()
    tally = Tally()
    sample: list[tuple[Case, Verdict]] = []

    @settings(
        max_examples=CASES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(case=cases())
    def check(case: Case) -> None:
        backends, policy, rejections = apply_dry_run(api, fuzz_namespace, case)
        verdict = judge(case, policy, backends, rejections)
        tally.record(case, verdict, len(backends))
        assert verdict.findings == [], (verdict.findings, yaml.safe_dump_all(case.documents()))
        wanted = {"table": OPERATOR_CASES - 1, "invalid": 1}.get(verdict.outcome, 0)
        if sum(1 for _, v in sample if v.outcome == verdict.outcome) < wanted:
            sample.append((case, verdict))

    check()
    # the slice reaches every outcome: it is not all rejections
    assert {outcome for _, outcome in tally.outcomes} == {"rejected", "invalid", "table"}, tally.outcomes

    # a few accepted ones through a real operator process, which must end each the same way
    agreement = run_through_operator(crds, sample, tmp_path)
    assert [a.problem for a in agreement if a.problem] == []
    assert {a.actual for a in agreement} == {"invalid", "table"}

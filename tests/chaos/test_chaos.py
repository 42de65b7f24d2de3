"""Chaos, counted, CI-sized (issue 11; bench/bench_chaos.py is the full run): one rig of real processes for the
module (etcd and kube-apiserver with RBAC, Prometheus, three simulators, the operator and the router), steady
load through the router, and each fault in turn. Every fault must cost no request before its first byte, every
routing-table version written must be valid, and the system must come back: the killed backend answers and
holds its weight again, the restarted operator writes tables, the router's watch delivers them after an
apiserver restart, and the operator sees Prometheus again.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from zeta_dev.chaos.faults import VICTIM, Dwell, FaultRun, run_fault
from zeta_dev.chaos.load import SteadyLoad
from zeta_dev.chaos.rig import Rig, running_rig
from zeta_dev.waiting import eventually

pytestmark = pytest.mark.controlplane  # its own: it kills the apiserver, so never ZETA_TEST_KUBECONFIG's

DWELL = Dwell(requests=10)
"""A fault lasts until ten requests sent after it have finished (about a second and a half of load)."""


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    with running_rig() as started:
        yield started


@pytest.fixture(scope="module")
def load(rig: Rig) -> Iterator[SteadyLoad]:
    with SteadyLoad(rig.router.url, rate=8.0) as running:
        yield running


@pytest.fixture(autouse=True)
def tables_stay_valid(rig: Rig, load: SteadyLoad, request: pytest.FixtureRequest) -> Iterator[None]:
    """After each fault: every table version the watcher saw was valid, and the router served no other."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for process in (rig.operator.process, rig.router.process):
            print(f"--- {process.name} ---\n{process.log_tail(60)}")
    assert rig.watcher.problems() == []
    served = {o.table_version for o in load.outcomes() if o.table_version is not None}
    assert served <= set(rig.watcher.versions()), "the router served a table version the watch never saw"


def assert_nothing_lost(run: FaultRun, *, streams_may_break: bool = False) -> None:
    """No request failed before its first byte; none failed at all unless a backend died under its streams."""
    lost = [o for o in run.outcomes if o.failed_before_first_byte]
    assert run.counts.sent >= DWELL.requests
    assert lost == [], f"{len(lost)} of {run.counts.sent} requests failed before their first byte"
    assert any(o.stream and o.answered for o in run.outcomes), "no stream was answered during the fault"
    if not streams_may_break:
        assert [o for o in run.outcomes if not o.answered] == []


def test_a_killed_backend_costs_no_request_before_its_first_byte(rig: Rig, load: SteadyLoad) -> None:
    run = run_fault("backend", rig, load, DWELL)
    assert_nothing_lost(run, streams_may_break=True)  # a stream the backend was generating dies with it
    assert run.counts.retried > 0, "no request was moved off the dead backend"
    assert {o.backend for o in run.outcomes if o.retries} - {VICTIM}, "retries went nowhere else"


def test_the_operator_killed_mid_cycle_writes_again_after_its_restart(rig: Rig, load: SteadyLoad) -> None:
    assert_nothing_lost(run_fault("operator", rig, load, DWELL))
    eventually(
        lambda: rig.metrics_available() == "True", timeout=120, what="the restarted operator measuring"
    )


def test_an_apiserver_restart_loses_nothing_and_the_router_watch_resumes(rig: Rig, load: SteadyLoad) -> None:
    before = rig.router.metric("zeta_router_table_watch_requests_total")
    assert_nothing_lost(run_fault("apiserver", rig, load, DWELL))
    assert rig.router.metric("zeta_router_table_watch_requests_total") > before
    assert rig.watcher.reconnects > 0  # the watcher's own watch was cut too, and it saw the versions after


def test_prometheus_killed_and_restarted_loses_nothing(rig: Rig, load: SteadyLoad) -> None:
    assert_nothing_lost(run_fault("prometheus", rig, load, DWELL))

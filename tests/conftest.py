"""Shared fixtures: a real control plane (or ZETA_TEST_KUBECONFIG's cluster), a fresh namespace per test,
and a real Prometheus.

    pytest                                     # embedded etcd + kube-apiserver + kube-controller-manager
    ZETA_TEST_KUBECONFIG=~/.kube/config pytest  # kind or a real cluster instead (same tests)
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import kubernetes
import pytest

from zeta_dev.localcluster.cluster import Cluster
from zeta_dev.localcluster.controlplane import ControlPlane, control_plane_binaries
from zeta_dev.localcluster.prometheus import Prometheus

# Property tests draw the same examples on every run (a red run can be rerun as it was; a green one does not
# turn red by chance). Exploring new examples is a local choice: --hypothesis-profile=explore.
hypothesis.settings.register_profile("zeta", derandomize=True, database=None)
hypothesis.settings.register_profile("explore", derandomize=False)
hypothesis.settings.load_profile("zeta")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Expose each phase's report on the test item (rep_setup, rep_call) for fixtures that explain failures."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


LONGEST_FIRST = (
    "tests/node/",
    "tests/demo/test_demo.py",
    "tests/operator/test_operator_e2e.py",
    "tests/operator/test_weights.py",
    "tests/chaos/test_chaos.py",
    "tests/operator/test_examples_table.py",
    "tests/classifier/test_train.py",
    "tests/operator/test_fuzz_crds.py",
    "tests/bench/test_bench_routing_smoke.py",
    "tests/operator/test_prometheus_tls.py",
)
"""The files that take longest (`--durations` of CI runs), started first so that none of them is still running
alone at the end: the node tests alone take about as long as all the others on the other workers."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return next(
            (i for i, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)), len(LONGEST_FIRST)
        )

    items.sort(key=rank)  # stable: the rest keep their order


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile` (make test) with the node tests as one unit: a file's tests stay on one worker, so its
    module fixtures start once, and one worker runs every node test, since a machine holds one node at a time.
    Units are handed out in collection order (LONGEST_FIRST), not by their number of tests."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False

    class NodeTestsTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return "tests/node" if path.startswith("tests/node/") else path

    return NodeTestsTogether(config, log)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=os.environ.get("ZETA_TEST_KUBECONFIG"),
        help="run against this existing cluster instead of the embedded control plane",
    )


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    external = request.config.getoption("--kubeconfig")
    if external:
        yield Cluster(kubeconfig=Path(external).expanduser())
        return
    binaries = control_plane_binaries()
    with ControlPlane.running(binaries=binaries) as cp:
        yield Cluster(kubeconfig=cp.kubeconfig, kubectl_binary=binaries / "kubectl")


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    cluster.install_crds()
    return cluster


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the namespace controller cleans up what is in it)."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        with contextlib.suppress(kubernetes.client.ApiException):
            core.delete_namespace(name)


@pytest.fixture
def prometheus() -> Iterator[Prometheus]:
    with Prometheus.running(scrape_interval="1s") as prom:
        yield prom

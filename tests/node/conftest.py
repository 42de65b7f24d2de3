"""Fixtures of the node tests: a real node (containerd, CNI, kubelet, kube-proxy, kube-scheduler) and images
built from the real Dockerfile. Root only; as any other user every node test is skipped with the reason."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zeta_dev.localcluster import node as node_harness
from zeta_dev.localcluster.node import Image


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    reason = node_harness.unsupported_reason()
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.node)
            # The first node test pays for the cold builds (kubelet & co., base image, images): ~20 min here.
            item.add_marker(pytest.mark.timeout(3600))
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


NODE_PRIORITY = -5
"""The nice value of the worker while it runs the node tests, and so of the node's processes it starts (they
inherit it). The node tests are make test's longest unit by far (one worker runs them all, one after another,
while the other workers share the two cores with them): ahead of the rest on the CPU, the whole run ends sooner.
Only root may raise a priority, and the node tests run only as root."""
_priority_before: list[int] = []


def pytest_runtest_setup(item: pytest.Item) -> None:
    if os.geteuid() == 0 and not _priority_before:
        _priority_before.append(os.getpriority(os.PRIO_PROCESS, 0))
        os.setpriority(os.PRIO_PROCESS, 0, NODE_PRIORITY)


@pytest.hookimpl(trylast=True)  # after the fixtures' own teardown (the node's)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Back to the worker's own priority once its next test is not a node test (this hook sees only node tests)."""
    here = Path(__file__).parent
    if _priority_before and (nextitem is None or not Path(str(nextitem.fspath)).is_relative_to(here)):
        os.setpriority(os.PRIO_PROCESS, 0, _priority_before.pop())


@pytest.fixture(scope="session")
def node_packages() -> None:
    """containerd, iptables and the rest, installed where missing (a fresh CI machine has none of them)."""
    node_harness.install_packages()


@pytest.fixture(scope="session")
def node_binaries(node_packages: None) -> Path:
    return node_harness.node_binaries()


@pytest.fixture(scope="session")
def images(node_binaries: Path) -> dict[str, Image]:
    return node_harness.build_images()

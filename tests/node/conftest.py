"""Fixtures of the node tests: a real node (containerd, CNI, kubelet, kube-proxy, kube-scheduler) and images
built from the real Dockerfile. Root only; as any other user every node test is skipped with the reason."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def node_binaries() -> Path:
    node_harness.install_packages()
    return node_harness.node_binaries()


@pytest.fixture(scope="session")
def images(node_binaries: Path) -> dict[str, Image]:
    return node_harness.build_images()

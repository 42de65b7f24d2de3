"""A node leaves nothing on the machine: no process, mount, network namespace, bridge, iptables chain, cgroup
or temp directory, also when the code inside the `with` block fails with a Pod running."""

from __future__ import annotations

from pathlib import Path

import pytest

from zeta_dev.localcluster.node import Image, Node, leftovers
from zeta_dev.localcluster.zeta_on_node import simulator_manifests


def test_node_teardown_leaves_nothing_even_when_the_body_fails(
    node_binaries: Path, images: dict[str, Image]
) -> None:
    assert leftovers() == [], "a previous node left these behind"
    seen: dict[str, object] = {}
    with (
        pytest.raises(RuntimeError, match="boom"),
        Node.running(images=images, binaries=node_binaries) as node,
    ):
        docs = simulator_manifests(
            images["zeta-sim"], backend="general-4b", replicas=1, model="m", size=4, max_seqs=32
        )
        node.cluster.apply(docs, namespace="default")
        node.cluster.kubectl("rollout", "status", "deployment/general-4b", "--timeout=110s")
        # While it runs, there is something to clean up: a Pod's network namespace, mounts, chains, the bridge.
        seen["work"] = node.workdir
        seen["during"] = leftovers(node.workdir)
        raise RuntimeError("boom")
    during = "\n".join(seen["during"])  # type: ignore[arg-type]
    for expected in ("process", "mount", "bridge zeta0", "chain nat/KUBE-SERVICES", "cgroup", "directory"):
        assert expected in during, f"{expected!r} not seen while the node ran:\n{during}"
    assert leftovers(seen["work"]) == []  # type: ignore[arg-type]

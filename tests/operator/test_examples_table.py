"""The operator carries ``spec.classifier.examples`` into the routing table, and reports what the schema cannot
check (the bytes the examples take in the table, duplicate texts) as InvalidSpec, keeping the last good table.

Real apiserver (RBAC on, the operator's own ServiceAccount token), real Prometheus scraping a real simulator.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import kubernetes
import pytest

from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims
from zeta_dev.localcluster.cluster import Cluster, scratch_dir
from zeta_dev.localcluster.fleet import (
    OperatorProcess,
    condition,
    events,
    policy_status,
    read_table,
    ready_pod,
    start_operator,
    watch_prometheus,
)
from zeta_dev.localcluster.processes import metric_samples
from zeta_dev.localcluster.prometheus import Prometheus
from zeta_dev.waiting import eventually
from zeta_operator.api.common import GROUP, VERSION
from zeta_operator.api.table import RoutingTable

EXAMPLES: list[dict[str, Any]] = [
    {
        "text": "Add the tenant id to every row of the nightly billing export",
        "taskType": "code",
        "complexity": 4,
    },
    {"text": "Translate this ticket into German for the Berlin desk", "taskType": "chat", "complexity": 2},
]


@dataclass
class Fleet:
    cluster: Cluster
    namespace: str
    prometheus: Prometheus
    sim: RunningSim
    operator: OperatorProcess


@pytest.fixture(scope="module")
def fleet(crds: Cluster) -> Iterator[Fleet]:
    namespace = f"ex-{int(time.time() * 1000) % 10**8}"
    core = kubernetes.client.CoreV1Api(crds.api_client())
    core.create_namespace(
        kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name=namespace))
    )
    workdir = scratch_dir("zeta-extest-")
    try:
        with (
            Prometheus.running(scrape_interval="1s") as prom,
            start_sims([SimSpec(model="general", size_b=7, max_seqs=8, seed=1)], log_dir=workdir) as sims,
        ):
            sim = sims[0]
            ready_pod(crds, namespace, "general-0", {"app": "general"})
            crds.apply([_backend(port=int(sim.url.rsplit(":", 1)[1]))], namespace=namespace)
            watch_prometheus(prom, namespace, {sim.address: "general-0"})
            fleet = Fleet(crds, namespace, prom, sim, start_operator(crds, namespace, workdir))
            try:
                yield fleet
            finally:
                print(fleet.operator.process.log_tail(40))
                fleet.operator.process.stop()
    finally:
        core.delete_namespace(namespace)
        shutil.rmtree(workdir, ignore_errors=True)


def _backend(*, port: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelBackend",
        "metadata": {"name": "general"},
        "spec": {
            "model": "general",
            "endpoints": {"selector": {"matchLabels": {"app": "general"}, "port": port}},
            "capabilities": {"tasks": ["chat", "code"], "maxComplexity": 5},
            "capacity": {"maxConcurrency": 8},
        },
    }


def _policy(prometheus_url: str, examples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RoutingPolicy",
        "metadata": {"name": "examples"},
        "spec": {
            "backends": {"names": ["general"]},
            "routingTable": {"configMapName": "routes-examples"},
            "classes": [
                {"name": "chat", "taskType": "chat", "preferred": ["general"]},
                {"name": "code", "taskType": "code", "preferred": ["general"]},
            ],
            "classifier": {"examples": examples},
            "prometheus": {"address": prometheus_url, "timeout": "1s", "window": "5s"},
            "adaptation": {"interval": "1s", "staleAfter": "6s", "blackout": "1s"},
        },
    }


def _table(fleet: Fleet) -> RoutingTable | None:
    return read_table(fleet.cluster, fleet.namespace, "routes-examples")


def _invalid_cycles(fleet: Fleet) -> float:
    """Control cycles the operator has ended on an invalid spec of this policy (its own /metrics)."""
    labels = {"policy": f"{fleet.namespace}/examples", "result": "invalid"}
    return sum(metric_samples(fleet.operator.metrics(), "zeta_operator_cycles_total", labels))


def _held_through_invalid_cycles(fleet: Fleet) -> None:
    """The table may have moved on since the good examples went in (weights follow the metrics), but never to
    the bad ones: three more cycles that find the spec invalid leave it exactly as it was, the good examples
    in it."""
    held = _table(fleet)
    assert held is not None and [e.to_wire() for e in held.classifier.examples] == EXAMPLES
    invalid_before = _invalid_cycles(fleet)
    eventually(lambda: _invalid_cycles(fleet) >= invalid_before + 3, timeout=30, what="three invalid cycles")
    kept = _table(fleet)
    assert kept is not None and (kept.version, kept.hash) == (held.version, held.hash)


def _invalid(fleet: Fleet) -> dict[str, Any] | None:
    c = condition(policy_status(fleet.cluster, fleet.namespace, "examples"), "InvalidSpec")
    return c if c and c["status"] == "True" else None


def test_examples_reach_the_table_and_bad_ones_keep_the_last_good_table(fleet: Fleet) -> None:
    fleet.cluster.apply([_policy(fleet.prometheus.url, EXAMPLES)], namespace=fleet.namespace)

    def carried() -> RoutingTable | None:
        table = _table(fleet)
        if table is None or [e.to_wire() for e in table.classifier.examples] != EXAMPLES:
            return None
        return table

    good = eventually(carried, timeout=60, what="the examples in the routing table")
    assert good is not None

    # Within every schema bound (8 x 2000 characters), but emoji are escaped in the table's JSON: 12 bytes each.
    wide = [{"text": f"{i} " + "\U0001f600" * 1990, "taskType": "chat", "complexity": 2} for i in range(8)]
    fleet.cluster.apply([_policy(fleet.prometheus.url, wide)], namespace=fleet.namespace)
    cond = eventually(
        lambda: _invalid(fleet), timeout=30, what="InvalidSpec=True for examples too big for the table"
    )
    assert cond is not None and "bytes in the routing table" in cond["message"]
    _held_through_invalid_cycles(fleet)
    assert any(e["reason"] == "InvalidSpec" for e in events(fleet.cluster, fleet.namespace))

    duplicated = [*EXAMPLES, {**EXAMPLES[0], "text": EXAMPLES[0]["text"].upper(), "complexity": 2}]
    fleet.cluster.apply([_policy(fleet.prometheus.url, duplicated)], namespace=fleet.namespace)
    eventually(
        lambda: "repeats the text" in ((_invalid(fleet) or {}).get("message") or ""),
        timeout=30,
        what="InvalidSpec=True for a duplicated example",
    )
    _held_through_invalid_cycles(fleet)

    fewer = EXAMPLES[:1]
    fleet.cluster.apply([_policy(fleet.prometheus.url, fewer)], namespace=fleet.namespace)
    eventually(
        lambda: (t := _table(fleet)) is not None and [e.to_wire() for e in t.classifier.examples] == fewer,
        timeout=60,
        what="the edited examples in a new table",
    )
    assert _invalid(fleet) is None

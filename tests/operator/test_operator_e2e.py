"""The operator end to end: real apiserver (RBAC on, operator authenticated by its ServiceAccount token bound to
the shipped ClusterRole), real Prometheus scraping real simulator processes, real routing-table ConfigMaps.

One fleet per module (three simulated backends: a 4B general model, a 7B coder, a 14B model); each test owns
its RoutingPolicy and ConfigMap. The Prometheus outage test runs last and restores Prometheus.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from zeta_dev.launch.sim import RunningSim, SimSpec, start_sims
from zeta_dev.localcluster.cluster import Cluster, scratch_dir
from zeta_dev.localcluster.fleet import (
    OperatorProcess,
    condition,
    events,
    policy_status,
    read_table,
    ready_pod,
    set_pod_ready,
    start_operator,
    watch_prometheus,
)
from zeta_dev.localcluster.prometheus import Prometheus
from zeta_dev.waiting import eventually
from zeta_operator.api.common import GROUP, VERSION
from zeta_operator.api.table import RoutingTable
from zeta_operator.operator.routestore import STATE_ANNOTATION

BACKENDS = {  # name -> (size, max concurrent sequences, tasks, complexity ceiling)
    "general-4b": (4, 8, ["chat", "summarize", "code"], 2),
    "coder-7b": (7, 4, ["code", "chat"], 4),
    "large-14b": (14, 4, ["chat", "code", "summarize", "reasoning"], 5),
}


@dataclass
class Fleet:
    cluster: Cluster
    namespace: str
    prometheus: Prometheus
    sims: dict[str, RunningSim]
    operator: OperatorProcess
    workdir: Path


@pytest.fixture(autouse=True)
def explain_failures(request: pytest.FixtureRequest) -> Iterator[None]:
    """On failure, print what the operator saw: statuses, events and the tail of its log."""
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed and "fleet" in request.fixturenames:
        fl: Fleet = request.getfixturevalue("fleet")
        print(
            fl.cluster.kubectl("get", "mb,rp,cm", "-n", fl.namespace, "-o", "yaml", check=False).stdout[
                -12000:
            ]
        )
        print(events(fl.cluster, fl.namespace)[-20:])
        print(fl.operator.process.log_tail(60))


@pytest.fixture(scope="module")
def fleet(crds: Cluster) -> Iterator[Fleet]:
    namespace = f"op-{int(time.time() * 1000) % 10**8}"
    core = kubernetes.client.CoreV1Api(crds.api_client())
    core.create_namespace({"metadata": {"name": namespace}})
    workdir = scratch_dir("zeta-optest-")
    specs = [
        SimSpec(model=n, size_b=s, max_seqs=m, seed=i) for i, (n, (s, m, _, _)) in enumerate(BACKENDS.items())
    ]
    try:
        with Prometheus.running(scrape_interval="1s") as prom, start_sims(specs, log_dir=workdir) as sims:
            by_name = {sim.spec.model: sim for sim in sims}
            for name, (size, seqs, tasks, ceiling) in BACKENDS.items():
                sim = by_name[name]
                ready_pod(crds, namespace, f"{name}-0", {"app": name, "zeta.dev/fleet": "test"})
                crds.apply(
                    [_backend(name, size, seqs, tasks, ceiling, port=int(sim.url.rsplit(":", 1)[1]))],
                    namespace=namespace,
                )
            watch_prometheus(prom, namespace, {by_name[n].address: f"{n}-0" for n in BACKENDS})
            fleet = Fleet(crds, namespace, prom, by_name, start_operator(crds, namespace, workdir), workdir)
            try:
                yield fleet
            finally:
                fleet.operator.process.stop()
    finally:
        core.delete_namespace(namespace)
        shutil.rmtree(workdir, ignore_errors=True)


def _backend(
    name: str, size: float, seqs: int, tasks: list[str], ceiling: int, *, port: int
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelBackend",
        "metadata": {"name": name, "labels": {"zeta.dev/fleet": "test"}},
        "spec": {
            "model": name,
            "sizeBillions": size,
            "endpoints": {"selector": {"matchLabels": {"app": name}, "port": port}},
            "capabilities": {"tasks": tasks, "maxComplexity": ceiling},
            "capacity": {"maxConcurrency": seqs},
        },
    }


def _policy(name: str, prometheus_url: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "backends": {"selector": {"matchLabels": {"zeta.dev/fleet": "test"}}},
        "routingTable": {"configMapName": f"routes-{name}"},
        "defaultClass": "chat-simple",
        "classes": [
            {"name": "chat-simple", "taskType": "chat", "complexity": {"min": 1, "max": 2},
             "preferred": ["general-4b"], "fallbacks": ["large-14b"], "latencyObjective": "5s"},
            {"name": "code-simple", "taskType": "code", "complexity": {"min": 1, "max": 2},
             "preferred": ["coder-7b"], "fallbacks": ["general-4b", "large-14b"], "latencyObjective": "5s"},
            {"name": "code-complex", "taskType": "code", "complexity": {"min": 3, "max": 4},
             "preferred": ["coder-7b"], "fallbacks": ["large-14b"], "latencyObjective": "20s"},
            {"name": "reasoning", "taskType": "reasoning", "complexity": {"min": 3, "max": 5},
             "preferred": ["large-14b"], "latencyObjective": "30s"},
        ],
        "prometheus": {"address": prometheus_url, "timeout": "1s", "window": "5s"},
        "thresholds": {"queueDepth": 2},
        "adaptation": {"interval": "1s", "smoothing": 0.7, "maxStep": 0.3, "weightFloor": 0.02,
                       "hysteresis": 0.02, "staleAfter": "6s", "blackout": "1s"},
        "offload": {"highWatermark": 0.85, "lowWatermark": 0.5, "maxComplexity": 2},
    }  # fmt: skip
    spec.update(overrides)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "RoutingPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def _apply_policy(fleet: Fleet, name: str, **overrides: Any) -> str:
    fleet.cluster.apply([_policy(name, fleet.prometheus.url, **overrides)], namespace=fleet.namespace)
    return f"routes-{name}"


def _table(fleet: Fleet, configmap: str) -> RoutingTable | None:
    return read_table(fleet.cluster, fleet.namespace, configmap)


def _weights(fleet: Fleet, configmap: str, task_class: str) -> dict[str, float]:
    table = _table(fleet, configmap)
    if table is None:
        return {}
    return dict(next(c for c in table.classes if c.name == task_class).weights)


def _assert_capability(table: RoutingTable) -> None:
    backends = {b.name: b for b in table.backends}
    for c in table.classes:
        for name, share in c.weights.items():
            b = backends[name]
            assert c.task_type in b.tasks and b.max_complexity >= c.complexity.max, (c.name, name, share)


class Load:
    """Keeps ``concurrency`` long requests in flight against one simulator until stopped."""

    def __init__(self, sim: RunningSim, concurrency: int) -> None:
        self.sim, self.concurrency = sim, concurrency
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(concurrency)

    def _one(self) -> None:
        body = json.dumps(
            {
                "model": self.sim.spec.model,
                "messages": [{"role": "user", "content": "write code"}],
                "max_tokens": 300,
            }
        ).encode()
        while not self.stop.is_set():
            request = urllib.request.Request(
                self.sim.url + "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=120) as r:
                    r.read()
            except OSError:
                time.sleep(0.2)

    def __enter__(self) -> Load:
        for _ in range(self.concurrency):
            self.pool.submit(self._one)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.pool.shutdown(wait=True)


def test_load_shift_moves_weight_and_returns(fleet: Fleet) -> None:
    cm = _apply_policy(fleet, "shift")
    seen: list[RoutingTable] = []

    def coder_share() -> float:
        table = _table(fleet, cm)
        if table is not None:
            seen.append(table)
        return _weights(fleet, cm, "code-simple").get("coder-7b", 0.0)

    eventually(lambda: coder_share() > 0.8, timeout=60, what="code-simple preferring coder-7b at rest")
    table = _table(fleet, cm)
    assert table is not None and table.policy == f"{fleet.namespace}/shift"

    with Load(fleet.sims["coder-7b"], concurrency=14):
        eventually(
            lambda: coder_share() < 0.5, timeout=60, what="code-simple moving off the overloaded coder"
        )
        shares = _weights(fleet, cm, "code-simple")
        assert shares.get("general-4b", 0) + shares.get("large-14b", 0) > 0.5
        status = policy_status(fleet.cluster, fleet.namespace, "shift")
        code_simple = next(c for c in status["classes"] if c["name"] == "code-simple")
        assert code_simple["offloading"] is True
        backend = kubernetes.client.CustomObjectsApi(fleet.cluster.api_client()).get_namespaced_custom_object(
            GROUP, VERSION, fleet.namespace, "modelbackends", "coder-7b"
        )["status"]
        assert backend["state"] in ("Overloaded", "Saturated") and backend["load"] > 0.85
        assert backend["signals"]["queueDepth"]["state"] == "ok"
        assert backend["signals"]["queueDepth"]["value"] >= 2
        assert any(e["reason"] == "OffloadStarted" for e in events(fleet.cluster, fleet.namespace))

    eventually(lambda: coder_share() > 0.8, timeout=90, what="code-simple returning to coder-7b")
    for t in seen:  # complex work never went to a model below its ceiling, at any moment
        _assert_capability(t)
        assert "general-4b" not in next(c for c in t.classes if c.name == "code-complex").weights
    assert len({t.version for t in seen}) >= 2


def test_invalid_edit_keeps_the_last_good_table(fleet: Fleet) -> None:
    cm = _apply_policy(fleet, "edits")
    eventually(lambda: _table(fleet, cm), timeout=60, what="first table")
    before = _table(fleet, cm)
    assert before is not None
    # Passes the CRD schema, but general-4b cannot do reasoning at complexity 5: only the operator can tell.
    broken = _policy("edits", fleet.prometheus.url)
    broken["spec"]["classes"][3]["preferred"] = ["general-4b"]
    fleet.cluster.apply([broken], namespace=fleet.namespace)

    def invalid() -> dict[str, Any] | None:
        c = condition(policy_status(fleet.cluster, fleet.namespace, "edits"), "InvalidSpec")
        return c if c and c["status"] == "True" else None

    cond = eventually(invalid, timeout=30, what="InvalidSpec=True")
    assert "general-4b" in cond["message"] and "reasoning" in cond["message"]
    time.sleep(3)  # three more intervals: the table must not change
    after = _table(fleet, cm)
    assert after is not None and after.version == before.version and after.hash == before.hash
    assert any(e["reason"] == "InvalidSpec" for e in events(fleet.cluster, fleet.namespace))

    _apply_policy(fleet, "edits")  # fixed again
    eventually(
        lambda: (
            (condition(policy_status(fleet.cluster, fleet.namespace, "edits"), "InvalidSpec") or {}).get(
                "status"
            )
            == "False"
        ),
        timeout=30,
        what="InvalidSpec=False after the fix",
    )


def test_endpoint_disappearing_reaches_the_table(fleet: Fleet) -> None:
    cm = _apply_policy(fleet, "endpoints")
    eventually(
        lambda: _weights(fleet, cm, "chat-simple").get("general-4b", 0) > 0.5, timeout=60, what="table"
    )
    set_pod_ready(fleet.cluster, fleet.namespace, "general-4b-0", False)
    try:

        def gone() -> bool:
            table = _table(fleet, cm)
            assert table is not None
            backend = next(b for b in table.backends if b.name == "general-4b")
            return not backend.endpoints and _weights(fleet, cm, "chat-simple").get("general-4b", 0) == 0

        eventually(gone, timeout=20, what="general-4b's endpoint leaving the table")
        assert _weights(fleet, cm, "chat-simple").get("large-14b") == pytest.approx(1.0)
    finally:
        set_pod_ready(fleet.cluster, fleet.namespace, "general-4b-0", True)
    eventually(
        lambda: _weights(fleet, cm, "chat-simple").get("general-4b", 0) > 0.5, timeout=60, what="return"
    )


def test_nan_and_empty_answers_never_zero_a_backend(fleet: Fleet) -> None:
    nan = 'sum by (pod) (vllm:num_requests_running{namespace="{namespace}", pod=~"{pods}"}) * 0 / 0'
    empty = 'sum by (pod) (no_such_metric{namespace="{namespace}", pod=~"{pods}"})'
    queries = {"cpu": nan, "memory": nan, "queueDepth": empty, "running": empty, "kvCache": nan,
               "latency": empty, "requestRate": empty, "errorRate": empty}  # fmt: skip
    cm = _apply_policy(
        fleet, "garbage", prometheus={"address": fleet.prometheus.url, "timeout": "1s", "queries": queries}
    )

    def unavailable() -> bool:
        status = policy_status(fleet.cluster, fleet.namespace, "garbage")
        return (condition(status, "MetricsAvailable") or {}).get("status") == "False"

    eventually(unavailable, timeout=30, what="MetricsAvailable=False")
    table = eventually(lambda: _table(fleet, cm), timeout=30, what="a table from static preferences")
    for c in table.classes:  # every class still has its capable backends, with finite weights summing to 1
        assert c.weights and sum(c.weights.values()) == pytest.approx(1.0)
    assert table.classes[0].weights.get("general-4b", 0) > 0.5


def test_slow_prometheus_does_not_stall_the_loop(fleet: Fleet) -> None:
    with socket.socket() as blackhole:  # accepts connections, never answers
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        url = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        cm = _apply_policy(fleet, "slow", prometheus={"address": url, "timeout": "1s"})
        eventually(lambda: _table(fleet, cm), timeout=30, what="a table despite a silent Prometheus")
        status = eventually(
            lambda: (
                (s := policy_status(fleet.cluster, fleet.namespace, "slow"))
                and (condition(s, "MetricsAvailable") or {}).get("status") == "False"
                and s
            ),
            timeout=30,
            what="MetricsAvailable=False",
        )
        assert (
            "1s" in condition(status, "MetricsAvailable")["message"]
        )  # says it timed out, and after how long
        assert fleet.operator.healthy()
        metrics = fleet.operator.metrics()
        assert 'zeta_operator_query_errors_total{kind="timeout"}' in metrics


def _cycles(operator: OperatorProcess, policy: str) -> int:
    """Control cycles this operator process has completed for ``policy`` (from its own /metrics)."""
    found = re.search(
        rf'zeta_operator_cycles_total{{policy="{re.escape(policy)}",result="ok"}} ([0-9.e+]+)',
        operator.metrics(),
    )
    return int(float(found.group(1))) if found else 0


def _saved_state(fleet: Fleet, configmap: str) -> dict[str, Any]:
    cm = kubernetes.client.CoreV1Api(fleet.cluster.api_client()).read_namespaced_config_map(
        configmap, fleet.namespace
    )
    return dict(json.loads((cm.metadata.annotations or {}).get(STATE_ANNOTATION, "{}")))


def _version_held_for(
    fleet: Fleet, configmap: str, policy: str, cycles: int
) -> Callable[[], RoutingTable | None]:
    """A check that answers the table once its version has not changed while the operator ran ``cycles``."""
    first: dict[int, int] = {}  # version -> operator cycles when it was first seen

    def check() -> RoutingTable | None:
        done = _cycles(fleet.operator, policy)
        table = _table(fleet, configmap)
        if table is None:
            return None
        seen = first.setdefault(table.version, done)
        return table if done - seen >= cycles else None

    return check


def test_operator_killed_mid_offload_resumes_it_without_a_rewrite_storm(fleet: Fleet) -> None:
    cm = _apply_policy(fleet, "killed")
    policy = f"{fleet.namespace}/killed"
    eventually(lambda: _weights(fleet, cm, "code-simple").get("coder-7b", 0) > 0.8, timeout=60, what="table")

    def flagged(reason: str) -> int:
        return sum(e["reason"] == reason for e in events(fleet.cluster, fleet.namespace) if "killed" in
                   e["object"] or e["object"] == "coder-7b")  # fmt: skip

    with Load(fleet.sims["coder-7b"], concurrency=14):
        eventually(
            lambda: _saved_state(fleet, cm).get("state", {}).get("offloading", {}).get("code-simple"),
            timeout=90,
            what="an offload of code-simple, saved",
        )
        # At its bound under a constant overload: the table stops changing while the operator keeps cycling.
        before = eventually(
            _version_held_for(fleet, cm, policy, cycles=5), timeout=120, what="a steady offload"
        )
        assert next(c for c in before.classes if c.name == "code-simple").weights["coder-7b"] < 0.5
        saved = _saved_state(fleet, cm)
        assert saved["version"] == 1 and "coder-7b" in saved["state"]["overloaded"]
        overloaded, started = flagged("BackendOverloaded"), flagged("OffloadStarted")
        assert overloaded >= 1 and started >= 1

        fleet.operator.process.kill()
        fleet.operator = start_operator(fleet.cluster, fleet.namespace, fleet.workdir)
        eventually(
            lambda: _cycles(fleet.operator, policy) >= 8, timeout=60, what="eight cycles after restart"
        )
        after = _table(fleet, cm)
        code_simple = next(
            c
            for c in policy_status(fleet.cluster, fleet.namespace, "killed")["classes"]
            if c["name"] == "code-simple"
        )
        assert code_simple["offloading"] is True

    assert after is not None and after.version == before.version, "the restarted operator rewrote the table"
    assert [c.weights for c in after.classes] == [c.weights for c in before.classes]
    # It remembered that coder-7b is overloaded and code-simple offloading: no second round of events.
    assert (flagged("BackendOverloaded"), flagged("OffloadStarted")) == (overloaded, started)
    assert "(saved state)" in fleet.operator.process.log_tail(400)


def test_prometheus_outage_holds_then_falls_back_then_recovers(fleet: Fleet) -> None:
    cm = _apply_policy(fleet, "outage")
    eventually(lambda: _weights(fleet, cm, "code-simple").get("coder-7b", 0) > 0.8, timeout=60, what="table")

    def cond(kind: str) -> dict[str, Any]:
        return condition(policy_status(fleet.cluster, fleet.namespace, "outage"), kind) or {}

    eventually(lambda: cond("MetricsAvailable").get("status") == "True", timeout=30, what="metrics first")
    held = _weights(fleet, cm, "code-simple")
    fleet.prometheus.stop()
    try:
        eventually(
            lambda: cond("MetricsAvailable").get("status") == "False", timeout=20, what="outage noticed"
        )
        assert _weights(fleet, cm, "code-simple") == pytest.approx(held, abs=0.05)  # held, not zeroed
        degraded = eventually(
            lambda: (c := cond("Degraded")).get("reason") == "StaticFallback" and c,
            timeout=30,
            what="static fallback",
        )
        assert degraded["status"] == "True"
        static = _weights(fleet, cm, "code-simple")
        assert static["coder-7b"] > 0.8 and all(v > 0 for v in static.values())
    finally:
        fleet.prometheus.start()
    eventually(lambda: cond("MetricsAvailable").get("status") == "True", timeout=60, what="recovery")
    assert any(e["reason"] == "MetricsUnavailable" for e in events(fleet.cluster, fleet.namespace))


def test_policy_status_and_printer_columns(fleet: Fleet) -> None:
    _apply_policy(fleet, "columns")
    eventually(
        lambda: (
            (condition(policy_status(fleet.cluster, fleet.namespace, "columns"), "Ready") or {}).get("status")
            == "True"
        ),
        timeout=60,
        what="Ready=True",
    )
    out = fleet.cluster.kubectl("get", "rp", "columns", "-n", fleet.namespace).stdout
    assert "True" in out and "code-simple: coder-7b=" in out
    status = policy_status(fleet.cluster, fleet.namespace, "columns")
    assert status["observedGeneration"] == 1 and status["table"]["version"] >= 1
    doc = yaml.safe_load(
        fleet.cluster.kubectl("get", "cm", "routes-columns", "-n", fleet.namespace, "-o", "yaml").stdout
    )
    assert doc["metadata"]["ownerReferences"][0]["name"] == "columns"

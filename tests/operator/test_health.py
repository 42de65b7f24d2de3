"""The operator's liveness (/healthz fails once a policy's loop stops cycling) and its metric series (those of\nremoved backends, classes and policies go away)."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from zeta_operator.operator.metrics import OperatorMetrics, health_app


def test_a_loop_that_stops_cycling_is_reported_stuck_after_three_intervals_and_grace() -> None:
    m = OperatorMetrics()
    m.last_cycle["ns/p"] = (100.0, 5.0)  # last cycle at t=100, interval 5 s
    assert m.stuck(grace=30, now=lambda: 144.0) == []  # 44 s: within 3 x 5 + 30
    assert m.stuck(grace=30, now=lambda: 146.0) == ["ns/p"]
    m.forget("ns/p")  # policy deleted: no longer expected to cycle
    assert m.stuck(grace=30, now=lambda: 1e9) == []


def test_healthz_answers_500_naming_the_stuck_policy_and_metrics_are_exposed() -> None:
    async def scenario() -> None:
        m = OperatorMetrics()
        m.alive("ns/p", 5.0)
        m.queries(8, {"timeout": 1})
        async with TestClient(TestServer(health_app(m))) as client:
            assert (await client.get("/healthz")).status == 200
            text = await (await client.get("/metrics")).text()
            assert "zeta_operator_prometheus_queries_total 8.0" in text
            assert 'zeta_operator_query_errors_total{kind="timeout"} 1.0' in text
            m.last_cycle["ns/p"] = (m.last_cycle["ns/p"][0] - 3600, 5.0)  # an hour without a cycle
            r = await client.get("/healthz")
            assert r.status == 500 and "ns/p" in await r.text()

    asyncio.run(scenario())


def _samples(m: OperatorMetrics) -> list[Sample]:
    return [
        s
        for family in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in family.samples
    ]


def _weights(m: OperatorMetrics) -> dict[tuple[str, str, str], float]:
    return {
        (s.labels["policy"], s.labels["task_class"], s.labels["backend"]): s.value
        for s in _samples(m)
        if s.name == "zeta_operator_weight"
    }


def test_series_of_removed_backends_classes_and_policies_go_away() -> None:
    m = OperatorMetrics()
    m.weights("ns", "p", {"chat": {"small": 0.7, "big": 0.3}, "code": {"coder": 1.0}})
    m.weights("ns", "q", {"chat": {"small": 1.0}})
    m.cycle("ns", "p", 0.1, "ok")
    m.cycle("ns", "p", 0.1, "error")
    m.table_written("ns", "p", 3)
    assert len(_weights(m)) == 4
    assert {s.labels["policy"] for s in _samples(m) if "policy" in s.labels} == {"ns/p", "ns/q"}

    # backend "big" left the policy and class "code" was removed from it
    m.weights("ns", "p", {"chat": {"small": 1.0}})
    assert _weights(m) == {("ns/p", "chat", "small"): 1.0, ("ns/q", "chat", "small"): 1.0}

    # policy p deleted: its loop ends and every series of it goes; q's stay
    m.forget("ns/p")
    assert _weights(m) == {("ns/q", "chat", "small"): 1.0}
    assert {s.labels["policy"] for s in _samples(m) if "policy" in s.labels} == {"ns/q"}

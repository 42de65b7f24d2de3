"""The operator's liveness: /healthz fails once a policy's loop stops cycling, and recovers when it cycles."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient, TestServer

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

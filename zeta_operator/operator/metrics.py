"""The operator's own Prometheus metrics and its /healthz, /metrics endpoint.

/healthz fails when any policy's control loop has not completed a cycle for three of its intervals (plus a
grace period): a stuck loop gets the pod restarted instead of silently serving stale weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CYCLE_RESULTS = ("ok", "invalid", "error")
"""The result label of zeta_operator_cycles_total (see `PolicyLoop.cycle`)."""


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._cycle = Histogram(
            "zeta_operator_cycle_duration_seconds", "Duration of one control cycle", ["policy"], registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )  # fmt: skip
        self._cycles = Counter(
            "zeta_operator_cycles_total", "Control cycles by result", ["policy", "result"], registry=r
        )
        self._queries = Counter("zeta_operator_prometheus_queries_total", "PromQL queries sent", registry=r)
        self._query_errors = Counter(
            "zeta_operator_query_errors_total", "Failed PromQL queries by kind", ["kind"], registry=r
        )
        self._weights = Gauge(
            "zeta_operator_weight", "Current weight", ["policy", "task_class", "backend"], registry=r
        )
        self._writes = Counter(
            "zeta_operator_table_writes_total", "Routing table writes", ["policy"], registry=r
        )
        self._version = Gauge("zeta_operator_table_version", "Routing table version", ["policy"], registry=r)
        self.last_cycle: dict[str, tuple[float, float]] = {}  # policy -> (monotonic time, interval seconds)
        self._weight_series: dict[str, set[tuple[str, str]]] = {}  # policy -> {(task class, backend)}

    def cycle(self, namespace: str, name: str, seconds: float, result: str) -> None:
        policy = f"{namespace}/{name}"
        self._cycle.labels(policy).observe(seconds)
        self._cycles.labels(policy, result).inc()

    def alive(self, policy: str, interval: float) -> None:
        self.last_cycle[policy] = (time.monotonic(), interval)

    def forget(self, policy: str) -> None:
        """The policy's loop ended (deleted, or the operator is stopping): its series go too."""
        self.last_cycle.pop(policy, None)
        self._set_weights(policy, {})
        for per_policy in (self._cycle, self._writes, self._version):
            per_policy.remove(policy)
        for result in CYCLE_RESULTS:
            self._cycles.remove(policy, result)

    def queries(self, count: int, errors: dict[str, int]) -> None:
        self._queries.inc(count)
        for kind, n in errors.items():
            self._query_errors.labels(kind).inc(n)

    def weights(self, namespace: str, name: str, shares: Mapping[str, Mapping[str, float]]) -> None:
        """The policy's weights, {task class: {backend: share}}, all at once: the series of classes and
        backends that are no longer in it are removed."""
        self._set_weights(f"{namespace}/{name}", shares)

    def _set_weights(self, policy: str, shares: Mapping[str, Mapping[str, float]]) -> None:
        current = {(c, b): share for c, by_backend in shares.items() for b, share in by_backend.items()}
        for task_class, backend in self._weight_series.get(policy, set()) - current.keys():
            self._weights.remove(policy, task_class, backend)
        for (task_class, backend), share in current.items():
            self._weights.labels(policy, task_class, backend).set(share)
        if current:
            self._weight_series[policy] = set(current)
        else:
            self._weight_series.pop(policy, None)

    def table_written(self, namespace: str, name: str, version: int) -> None:
        self._writes.labels(f"{namespace}/{name}").inc()
        self._version.labels(f"{namespace}/{name}").set(version)

    def stuck(self, *, grace: float = 30.0, now: Callable[[], float] = time.monotonic) -> list[str]:
        t = now()
        return sorted(p for p, (at, interval) in self.last_cycle.items() if t - at > 3 * interval + grace)


def health_app(metrics: OperatorMetrics) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        stuck = metrics.stuck()
        if stuck:
            return web.Response(status=500, text="control loop stopped cycling: " + ", ".join(stuck) + "\n")
        return web.Response(text="ok\n")

    async def prometheus(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", prometheus)
    return app

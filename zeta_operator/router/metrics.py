"""The router's Prometheus series (a private registry, served at /metrics).

The names and labels are an interface: the operator reads them back to compute weights, so change them only
together with its queries.
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

LATENCY_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    1.5,
    2.0,
    3.0,
    4.0,
    5.0,
    6.0,
    8.0,
    10.0,
    12.5,
    15.0,
    20.0,
    25.0,
    30.0,
    45.0,
    60.0,
    90.0,
    120.0,
)  # fine enough that a p95 estimated within a bucket stays close to the latency objectives users set
"""From a cached short answer to a long generation (LLM latencies)."""
CONFIDENCE_BUCKETS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 1.0)
"""Calibrated probability that a classification is right (task type and tier); 1.0 for headers and aliases."""
OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
"""The router's own time per request: it should sit in the first buckets."""
SECOND_OPINION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""A sentence encoder on one core: tens of ms for a short ask, hundreds for a long one."""
SECOND_OPINION_OUTCOMES = ("changed", "kept", "busy", "late", "error")


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "zeta_router_requests_total",
            "Requests answered, by backend, task class and HTTP status (or 'error': broken after the first byte).",
            ["backend", "task_class", "code"],
            registry=r,
        )
        self.duration = Histogram(
            "zeta_router_request_duration_seconds",
            "Time from the request's arrival to its last byte.",
            ["backend", "task_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttfb = Histogram(
            "zeta_router_time_to_first_byte_seconds",
            "Time from the request's arrival to the backend's first body byte.",
            ["backend", "task_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inflight = Gauge(
            "zeta_router_inflight_requests",
            "Requests in flight per endpoint.",
            ["backend", "endpoint"],
            registry=r,
        )
        self.engine_occupancy = Gauge(
            "zeta_router_engine_occupancy",
            "Requests running and waiting in the engine, as it last reported them on its /metrics (all routers' "
            "and any other client's).",
            ["backend", "endpoint"],
            registry=r,
        )
        self.engine_reads = Counter(
            "zeta_router_engine_reads_total",
            "Reads of the engines' /metrics for their occupancy: ok, or unreadable (failed, or without the "
            "engine's running and waiting gauges: that endpoint keeps its share of the cap).",
            ["result"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "zeta_router_queue_depth", "Requests waiting for a free endpoint.", ["task_class"], registry=r
        )
        self.queue_wait = Histogram(
            "zeta_router_queue_wait_seconds",
            "Time spent waiting in the queue (served or not).",
            ["task_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "zeta_router_retries_total",
            "Attempts moved to another endpoint after a failure of this backend before the first byte.",
            ["backend"],
            registry=r,
        )
        self.ejections = Counter(
            "zeta_router_ejections_total",
            "Endpoints ejected after consecutive failures.",
            ["backend", "endpoint"],
            registry=r,
        )
        self.decisions = Counter(
            "zeta_router_decisions_total",
            "Backend choices by reason: preferred, offload, overflow or fallback.",
            ["task_class", "backend", "reason"],
            registry=r,
        )
        self.rejected = Counter(
            "zeta_router_rejected_total",
            "Requests the router answered itself with an error, by reason.",
            ["task_class", "reason"],
            registry=r,
        )
        self.table_version = Gauge(
            "zeta_router_table_version", "Version of the routing table in use (0: none yet).", registry=r
        )
        self.table_reloads = Counter(
            "zeta_router_table_reloads_total",
            "Routing table loads: ok, invalid (rejected, last good kept) or error (could not read).",
            ["result"],
            registry=r,
        )
        self.table_watches = Counter(
            "zeta_router_table_watch_requests_total",
            "Watch requests on the routing table ConfigMap, by start: list (the first, or after 410 Gone) or "
            "resume (from the last resourceVersion, after the server ended the previous one or a reconnect).",
            ["start"],
            registry=r,
        )
        self.overhead = Histogram(
            "zeta_router_overhead_seconds",
            "The router's own time per request (parsing, classification, choice, relaying), without upstream time.",
            buckets=OVERHEAD_BUCKETS,
            registry=r,
        )
        self.confidence = Histogram(
            "zeta_router_classification_confidence",
            "Probability that the request's task type and complexity tier are right, by what decided the task "
            "type (header, alias, rule, model, heuristic, endpoint, default).",
            ["source"],
            buckets=CONFIDENCE_BUCKETS,
            registry=r,
        )
        self.second_opinion = Counter(
            "zeta_router_second_opinion_total",
            "Requests the learned model was unsure of, by what the encoder's second opinion did (--second-opinion "
            "encoder): changed or kept the task type, or nothing because it was busy (backlog full), late "
            "(timeout) or failed (error).",
            ["outcome"],
            registry=r,
        )
        self.second_opinion_seconds = Histogram(
            "zeta_router_second_opinion_seconds",
            "How long a request waited for the encoder's second opinion (bounded by --second-opinion-timeout).",
            buckets=SECOND_OPINION_BUCKETS,
            registry=r,
        )
        self.classifier = Gauge(
            "zeta_router_classifier_info",
            "1 for the classifier in use: learned (the shipped model) or rules (chosen with --classifier rules).",
            ["kind", "weights"],
            registry=r,
        )
        for result in ("ok", "invalid", "error"):
            self.table_reloads.labels(result)
        for start in ("list", "resume"):
            self.table_watches.labels(start)
        for result in ("ok", "unreadable"):
            self.engine_reads.labels(result)
        for outcome in SECOND_OPINION_OUTCOMES:
            self.second_opinion.labels(outcome)

    def forget_except(
        self, *, backends: Collection[str], classes: Collection[str], endpoints: Collection[str]
    ) -> int:
        """Remove every series labelled with a backend, task class or endpoint that is not in these
        (the new routing table's, plus the placeholders the router uses, such as backend "none"), so
        dashboards and alerts stop seeing what was removed from the table. Returns how many went.

        The in-flight gauge is left to `Admission`, which removes an endpoint's series once it is idle."""
        allowed = {"backend": set(backends), "task_class": set(classes), "endpoint": set(endpoints)}
        removed = 0
        for metric in vars(self).values():
            if not isinstance(metric, MetricWrapperBase) or metric is self.inflight:
                continue
            for labels in _series(metric):
                if any(name in allowed and value not in allowed[name] for name, value in labels.items()):
                    metric.remove(*labels.values())
                    removed += 1
        return removed

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _series(metric: MetricWrapperBase) -> list[dict[str, str]]:
    """The label sets of a metric's series, in the metric's label order (what `remove` takes)."""
    found: dict[tuple[str, ...], dict[str, str]] = {}
    for family in metric.collect():
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k not in ("le", "quantile")}
            found.setdefault(tuple(labels.values()), labels)
    return [labels for labels in found.values() if labels]

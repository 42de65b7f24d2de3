"""The metrics provider: PromQL in, readings out. Nothing here decides anything.

One query per signal per policy (all its backends at once, aggregated by pod or by backend), plus one per distinct
per-backend override. Every answer is classified: ok, no-data (empty, or a backend missing from the answer) or
error (HTTP failure, timeout, NaN/Inf, a duplicate series where one was expected). prometheus-api-client is
synchronous, so `measure` runs in a worker thread, off the operator's event loop.
"""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import requests
import urllib3
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from ..api.backend import SignalQueries
from ..api.common import parse_duration
from ..api.policy import RoutingPolicySpec
from .promql import DEFAULT_QUERIES, ENGINE_QUERIES, regex_alternation, render
from .weights import Reading

PER_POD_SIGNALS = ("cpu", "memory", "queueDepth", "running", "kvCache")
"""Signals answered per pod; a backend's value is the worst pod (cpu, memory, kvCache) or the mean (queues)."""
MEAN_OVER_PODS = frozenset({"queueDepth", "running"})
PER_BACKEND_SIGNALS = ("requestRate", "errorRate")
SIGNAL_FIELDS = {
    "cpu": "cpu",
    "memory": "memory",
    "latency": "latency",
    "requestRate": "request_rate",
    "errorRate": "error_rate",
    "queueDepth": "queue_depth",
    "running": "running",
    "kvCache": "kv_cache",
}


@dataclass(frozen=True)
class MeasuredBackend:
    """What the provider needs to know about one backend: its pods and its own query overrides."""

    name: str
    pods: tuple[str, ...]
    engine: str = "vllm"
    overrides: SignalQueries = field(default_factory=SignalQueries)


@dataclass
class Measurement:
    """Readings of one cycle: per backend per signal, and latency per backend per task class."""

    signals: dict[str, dict[str, Reading]] = field(default_factory=dict)
    latency: dict[str, dict[str, Reading]] = field(default_factory=dict)
    queries: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # kind -> count, for the operator's metrics
    unreachable: str | None = (
        None  # set after a timeout or refused connection: the rest of the cycle is skipped
    )

    def failed(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


class QueryError(Exception):
    """A query could not be answered; ``kind`` is timeout, connection, http or bad-response."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class PrometheusSource:
    """Runs the policy's queries against one Prometheus server."""

    def __init__(self, address: str, *, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        # No retries: a slow or dead Prometheus must cost one timeout per query, not several.
        self._client = PrometheusConnect(
            url=address, disable_ssl=True, retry=Retry(total=0, read=False), timeout=timeout
        )

    def query(self, promql: str) -> list[dict[str, object]]:
        try:
            result = self._client.custom_query(
                promql, params={"timeout": f"{max(1, int(self.timeout * 1000))}ms"}
            )
        except requests.Timeout as e:
            raise QueryError("timeout", f"no answer within {self.timeout:g}s") from e
        except (requests.ConnectionError, urllib3.exceptions.HTTPError) as e:
            raise QueryError("connection", f"cannot reach {self.address}: {type(e).__name__}") from e
        except PrometheusApiClientException as e:
            raise QueryError("http", str(e)[:300]) from e
        except (ValueError, KeyError) as e:
            raise QueryError("bad-response", f"unreadable answer: {e}") from e
        if not isinstance(result, list):
            raise QueryError("bad-response", "answer is not a vector")
        return result


def _value(series: Mapping[str, object]) -> float:
    raw = series.get("value")
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise ValueError("series without a [time, value] pair")
    return float(raw[1])


def _reading(values: list[float], *, mean: bool) -> Reading:
    if not values:
        return Reading(None, "no-data")
    if not all(math.isfinite(v) for v in values):
        return Reading(None, "error")
    return Reading(sum(values) / len(values) if mean else max(values), "ok")


def _template(signal: str, backend: MeasuredBackend, policy: RoutingPolicySpec) -> str | None:
    fieldname = SIGNAL_FIELDS[signal]
    own = getattr(backend.overrides, fieldname)
    if own:
        return str(own)
    shared = getattr(policy.prometheus.queries, fieldname)
    if shared:
        return str(shared)
    return DEFAULT_QUERIES.get(signal) or ENGINE_QUERIES.get(backend.engine, {}).get(signal)


def measure(
    source: PrometheusSource,
    policy: RoutingPolicySpec,
    *,
    namespace: str,
    backends: Sequence[MeasuredBackend],
) -> Measurement:
    """Every signal for every backend, in a bounded number of queries."""
    out = Measurement()
    for b in backends:
        out.signals[b.name] = {}
        out.latency[b.name] = {}
    for signal in (*PER_POD_SIGNALS, *PER_BACKEND_SIGNALS, "latency"):
        groups: dict[str, list[MeasuredBackend]] = defaultdict(list)
        for b in backends:
            template = _template(signal, b, policy)
            if template:
                groups[template].append(b)
            else:
                out.signals[b.name][signal] = Reading(None, "no-data")
        for template, members in groups.items():
            _run(source, out, signal, template, members, policy=policy, namespace=namespace)
    return out


def _run(
    source: PrometheusSource,
    out: Measurement,
    signal: str,
    template: str,
    members: list[MeasuredBackend],
    *,
    policy: RoutingPolicySpec,
    namespace: str,
) -> None:
    values = {
        "namespace": namespace,
        "pods": regex_alternation([p for b in members for p in b.pods]),
        "backends": regex_alternation([b.name for b in members]),
        "window": f"{int(parse_duration(policy.prometheus.window))}s",
        "quantile": f"{policy.prometheus.latency_quantile:g}",
    }
    try:
        if out.unreachable:
            raise QueryError("skipped", out.unreachable)
        out.queries += 1
        series = source.query(render(template, values))
    except QueryError as e:
        out.failed(e.kind)
        if e.kind in ("timeout", "connection"):
            out.unreachable = str(e)  # one timeout per cycle, not one per query
        for b in members:
            if signal == "latency":
                out.latency[b.name] = {c.name: Reading(None, "error") for c in policy.classes}
            else:
                out.signals[b.name][signal] = Reading(None, "error")
        return
    if signal == "latency":
        _assign_latency(out, series, members)
    elif signal in PER_POD_SIGNALS:
        _assign_per_pod(out, signal, series, members)
    else:
        _assign_per_backend(out, signal, series, members)


def _labels(series: Mapping[str, object]) -> Mapping[str, str]:
    metric = series.get("metric")
    return metric if isinstance(metric, dict) else {}


def _assign_per_pod(
    out: Measurement, signal: str, series: list[dict[str, object]], members: list[MeasuredBackend]
) -> None:
    owner = {pod: b.name for b in members for pod in b.pods}
    values: dict[str, list[float]] = defaultdict(list)
    broken: set[str] = set()
    for s in series:
        name = owner.get(_labels(s).get("pod", ""))
        if name is None:
            continue
        try:
            values[name].append(_value(s))
        except ValueError:
            broken.add(name)
    for b in members:
        reading = (
            Reading(None, "error")
            if b.name in broken
            else _reading(values[b.name], mean=signal in MEAN_OVER_PODS)
        )
        out.signals[b.name][signal] = reading


def _assign_per_backend(
    out: Measurement, signal: str, series: list[dict[str, object]], members: list[MeasuredBackend]
) -> None:
    seen: dict[str, list[float]] = defaultdict(list)
    for s in series:
        name = _labels(s).get("backend", "")
        try:
            seen[name].append(_value(s))
        except ValueError:
            seen[name].append(math.nan)
    for b in members:
        found = seen.get(b.name, [])
        # One series per backend is expected; more means the template aggregates wrongly.
        out.signals[b.name][signal] = (
            Reading(None, "error") if len(found) > 1 else _reading(found, mean=False)
        )


def _assign_latency(
    out: Measurement, series: list[dict[str, object]], members: list[MeasuredBackend]
) -> None:
    names = {b.name for b in members}
    per: dict[tuple[str, str], list[float]] = defaultdict(list)
    for s in series:
        labels = _labels(s)
        key = (labels.get("backend", ""), labels.get("task_class", ""))
        if key[0] in names:
            try:
                per[key].append(_value(s))
            except ValueError:
                per[key].append(math.nan)
    for (backend, task_class), found in per.items():
        reading = Reading(None, "error") if len(found) > 1 else _reading(found, mean=False)
        # histogram_quantile of a window with no requests is NaN: that is "no traffic", not a failure.
        if reading.state == "error" and len(found) == 1 and math.isnan(found[0]):
            reading = Reading(None, "no-data")
        out.latency[backend][task_class] = reading


async def measure_async(
    source: PrometheusSource,
    policy: RoutingPolicySpec,
    *,
    namespace: str,
    backends: Sequence[MeasuredBackend],
) -> Measurement:
    """`measure` in a worker thread, so the synchronous client never blocks the event loop."""
    return await asyncio.to_thread(measure, source, policy, namespace=namespace, backends=backends)

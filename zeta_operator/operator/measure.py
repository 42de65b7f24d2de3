"""The metrics provider: PromQL in, readings out. Nothing here decides anything.

One query per signal per policy (all its backends at once, aggregated by pod or by backend), plus one per distinct
per-backend override. Every answer is classified: ok, no-data (empty, or a backend missing from the answer) or
error (HTTP failure, timeout, refused credentials or certificate, NaN/Inf, a duplicate series where one was
expected). prometheus-api-client is synchronous, so a cycle's queries run concurrently on a small thread pool
under one deadline (the policy's `prometheus.timeout`), and `measure_async` waits for them off the event loop.

TLS is verified by default: against the system's CAs, or only against a CA bundle the policy names.
Credentials are never logged and never part of a message: errors name the address and what went wrong.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import hashlib
import math
import re
import shutil
import ssl
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import requests
import urllib3
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from ..api.backend import SignalQueries
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
    unreachable: str | None = None
    """Why Prometheus could not be used at all this cycle (timeout, connection, tls, auth, credentials)."""
    failure_kind: str | None = None
    """The kind of that failure, for the condition's reason."""

    def failed(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


UNUSABLE = ("credentials", "tls", "auth", "connection", "timeout")
"""Failure kinds that mean Prometheus itself could not be used, most telling first."""


class QueryError(Exception):
    """A query could not be answered; ``kind`` is timeout, connection, tls, auth, http or bad-response."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class ClientTLS:
    """How an https address is verified: the system's CAs (default), only ``ca_pem``, or not at all."""

    ca_pem: str | None = None
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class ClientAuth:
    """Credentials sent to Prometheus; never shown in a repr, a log line or a message."""

    basic: tuple[str, str] | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)

    @property
    def kind(self) -> str:
        return "BasicAuth" if self.basic else ("BearerToken" if self.bearer_token else "None")


TLSMode = Literal["Verified", "InsecureSkipVerify", "Plaintext"]


def tls_mode(address: str, insecure_skip_verify: bool) -> TLSMode:
    """What status reports: https verified, https unverified, or plain http."""
    if not address.lower().startswith("https://"):
        return "Plaintext"
    return "InsecureSkipVerify" if insecure_skip_verify else "Verified"


MAX_PARALLEL_QUERIES = 8
"""Queries in flight at once per Prometheus; within requests' connection pool (10), so connections are reused."""

_HTTP_STATUS = re.compile(r"HTTP Status Code (\d+)")


class PrometheusSource:
    """Runs the policy's queries against one Prometheus server."""

    def __init__(
        self,
        address: str,
        *,
        timeout: float,
        tls: ClientTLS | None = None,
        auth: ClientAuth | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self.tls = tls or ClientTLS()
        self.auth = auth or ClientAuth()
        headers = {"Authorization": f"Bearer {self.auth.bearer_token}"} if self.auth.bearer_token else None
        session = requests.Session()
        # requests takes a CA bundle as a file path; without one it verifies against the system's CAs.
        session.verify = _ca_file(self.tls.ca_pem) if self.tls.ca_pem else not self.tls.insecure_skip_verify
        if self.tls.insecure_skip_verify:
            # Said once in status and by an Event (the operator's job), not by urllib3 on every request.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
        # No retries: a slow or dead Prometheus must cost one deadline per cycle, not several.
        self._client = PrometheusConnect(
            url=address,
            retry=Retry(total=0, read=False),
            timeout=timeout,
            headers=headers,
            auth=self.auth.basic,
            session=session,
        )
        self._pool = concurrent.futures.ThreadPoolExecutor(
            MAX_PARALLEL_QUERIES, thread_name_prefix="prometheus"
        )

    @property
    def tls_mode(self) -> TLSMode:
        return tls_mode(self.address, self.tls.insecure_skip_verify)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def query(self, promql: str, *, timeout: float | None = None) -> list[dict[str, object]]:
        """One instant query, answered within ``timeout`` seconds (default: the source's timeout)."""
        budget = self.timeout if timeout is None else timeout
        try:
            result = self._client.custom_query(
                promql, params={"timeout": f"{max(1, int(budget * 1000))}ms"}, timeout=budget
            )
        except requests.Timeout as e:
            raise QueryError("timeout", f"no answer from {self.address} within {self.timeout:g}s") from e
        except requests.exceptions.SSLError as e:
            raise QueryError("tls", _tls_message(self.address, e)) from e
        except (requests.ConnectionError, urllib3.exceptions.HTTPError) as e:
            raise QueryError("connection", f"cannot reach {self.address}: {type(e).__name__}") from e
        except PrometheusApiClientException as e:
            raise _http_error(self.address, str(e)) from e
        except (ValueError, KeyError) as e:
            raise QueryError("bad-response", f"unreadable answer: {e}") from e
        if not isinstance(result, list):
            raise QueryError("bad-response", "answer is not a vector")
        return result

    def query_all(self, promqls: Sequence[str]) -> list[list[dict[str, object]] | QueryError]:
        """Every query at once, all under one deadline of ``timeout`` seconds; each answer or its error."""
        deadline = time.monotonic() + self.timeout
        futures = [self._pool.submit(self._query_before, q, deadline) for q in promqls]
        concurrent.futures.wait(futures, timeout=self.timeout)
        late = QueryError("timeout", f"no answer from {self.address} within {self.timeout:g}s")
        results: list[list[dict[str, object]] | QueryError] = []
        for future in futures:
            if not future.done():
                future.cancel()  # a query still waiting for a worker never starts; a running one ends by its timeout
                results.append(late)
                continue
            try:
                results.append(future.result())
            except QueryError as e:
                results.append(e)
        return results

    def _query_before(self, promql: str, deadline: float) -> list[dict[str, object]]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise QueryError("timeout", f"no answer from {self.address} within {self.timeout:g}s")
        return self.query(promql, timeout=left)


def _http_error(address: str, text: str) -> QueryError:
    found = _HTTP_STATUS.search(text)
    status = int(found.group(1)) if found else 0
    if status == 401:
        return QueryError("auth", f"{address} rejected the credentials (HTTP 401 Unauthorized)")
    if status == 403:
        return QueryError("auth", f"{address} refused access with these credentials (HTTP 403 Forbidden)")
    return QueryError("http", text[:300])


def _tls_message(address: str, error: BaseException) -> str:
    """What went wrong in the handshake, from the ssl error deep inside requests' and urllib3's wrappers."""
    seen: set[int] = set()
    todo: list[BaseException] = [error]
    while todo:
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, ssl.SSLCertVerificationError):
            return f"TLS certificate of {address} not trusted: {e.verify_message}"
        if isinstance(e, ssl.SSLError):
            return f"TLS handshake with {address} failed: {e.reason or e}"
        todo += [x for x in (e.__cause__, e.__context__) if x is not None]
        todo += [a for a in e.args if isinstance(a, BaseException)]
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            todo.append(reason)
    return f"TLS handshake with {address} failed"


_ca_dir: Path | None = None
_ca_lock = threading.Lock()


def _ca_file(pem: str) -> str:
    """A file holding ``pem`` (public certificates, no secret), named by its content so each is written once."""
    global _ca_dir
    with _ca_lock:
        if _ca_dir is None:
            _ca_dir = Path(tempfile.mkdtemp(prefix="zeta-prometheus-ca-"))
            atexit.register(shutil.rmtree, _ca_dir, ignore_errors=True)  # requests wants a path; leave none
        path = _ca_dir / f"{hashlib.sha256(pem.encode()).hexdigest()[:32]}.pem"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            tmp.write_text(pem)
            tmp.replace(path)
        return str(path)


def promql_duration(seconds: float) -> str:
    """A PromQL duration for a positive number of seconds: ``30s``, ``500ms``, ``1500ms`` (never ``0s``)."""
    millis = max(1, round(seconds * 1000))
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


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


@dataclass(frozen=True)
class _Query:
    signal: str
    promql: str
    members: list[MeasuredBackend]


def measure(
    source: PrometheusSource,
    policy: RoutingPolicySpec,
    *,
    namespace: str,
    backends: Sequence[MeasuredBackend],
) -> Measurement:
    """Every signal for every backend, in a bounded number of queries, all at once under one deadline."""
    out = Measurement()
    for b in backends:
        out.signals[b.name] = {}
        out.latency[b.name] = {}
    planned = _plan(out, policy, namespace=namespace, backends=backends)
    out.queries = len(planned)
    for query, answer in zip(planned, source.query_all([q.promql for q in planned]), strict=True):
        if isinstance(answer, QueryError):
            _record_failure(out, answer, query, policy)
        elif query.signal == "latency":
            _assign_latency(out, answer, query.members)
        elif query.signal in PER_POD_SIGNALS:
            _assign_per_pod(out, query.signal, answer, query.members)
        else:
            _assign_per_backend(out, query.signal, answer, query.members)
    return out


def unmeasured(
    policy: RoutingPolicySpec, *, backends: Sequence[MeasuredBackend], kind: str, message: str
) -> Measurement:
    """A cycle in which Prometheus could not even be asked (e.g. its credentials are unreadable)."""
    out = Measurement(unreachable=message, failure_kind=kind, errors={kind: 1})
    for b in backends:
        out.signals[b.name] = {s: Reading(None, "error") for s in (*PER_POD_SIGNALS, *PER_BACKEND_SIGNALS)}
        out.latency[b.name] = {c.name: Reading(None, "error") for c in policy.classes}
    return out


def _plan(
    out: Measurement, policy: RoutingPolicySpec, *, namespace: str, backends: Sequence[MeasuredBackend]
) -> list[_Query]:
    """One query per (signal, template); backends without any template for a signal get no-data at once."""
    planned = []
    for signal in (*PER_POD_SIGNALS, *PER_BACKEND_SIGNALS, "latency"):
        groups: dict[str, list[MeasuredBackend]] = defaultdict(list)
        for b in backends:
            template = _template(signal, b, policy)
            if template:
                groups[template].append(b)
            else:
                out.signals[b.name][signal] = Reading(None, "no-data")
        for template, members in groups.items():
            values = {
                "namespace": namespace,
                "pods": regex_alternation([p for b in members for p in b.pods]),
                "backends": regex_alternation([b.name for b in members]),
                "window": promql_duration(policy.prometheus.window_seconds),
                "quantile": f"{policy.prometheus.latency_quantile:g}",
            }
            planned.append(_Query(signal, render(template, values), members))
    return planned


def _record_failure(out: Measurement, error: QueryError, query: _Query, policy: RoutingPolicySpec) -> None:
    out.failed(error.kind)
    if error.kind in UNUSABLE and (
        out.failure_kind is None or UNUSABLE.index(error.kind) < UNUSABLE.index(out.failure_kind)
    ):
        out.unreachable, out.failure_kind = str(error), error.kind
    for b in query.members:
        if query.signal == "latency":
            out.latency[b.name] = {c.name: Reading(None, "error") for c in policy.classes}
        else:
            out.signals[b.name][query.signal] = Reading(None, "error")


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
    """`measure` waited for in a worker thread, so the synchronous client never blocks the event loop."""
    return await asyncio.to_thread(measure, source, policy, namespace=namespace, backends=backends)

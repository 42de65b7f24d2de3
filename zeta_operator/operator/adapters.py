"""The production `ports`: Prometheus, the Kubernetes API (watches to read, requests to write) and the wall
clock, built in one place.

Each adapter wraps what does the work (`measure`, `discovery`, `routestore`, the status subresource and kopf's
events) without changing it; `kubernetes_ports` is the one factory the kopf handlers call.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import kubernetes
from kubernetes.client import ApiException

from ..api.common import GROUP, VERSION, parse_duration
from ..api.policy import RoutingPolicySpec
from .discovery import WatchedEndpoints
from .measure import MeasuredBackend, Measurement, PrometheusSource, measure_async
from .ports import Ports
from .routestore import WatchedRoutes

log = logging.getLogger("zeta.operator")

EventPoster = Callable[[Mapping[str, Any], str, str, str], None]
"""(object body, type Normal|Warning, reason, message) -> posts a Kubernetes Event."""

Index = Mapping[Any, Iterable[Mapping[str, Any]]]
"""A watch-fed index (a kopf.Index): key -> the summaries of the objects filed under it."""


class PrometheusMetrics:
    """`ports.MetricsProvider` over `measure`: one `PrometheusSource` per policy address and timeout, kept while
    they stay the same (its HTTP connections are reused from cycle to cycle)."""

    def __init__(self) -> None:
        self._source: PrometheusSource | None = None

    async def measure(
        self, policy: RoutingPolicySpec, *, namespace: str, backends: Sequence[MeasuredBackend]
    ) -> Measurement:
        return await measure_async(self._prometheus(policy), policy, namespace=namespace, backends=backends)

    def _prometheus(self, policy: RoutingPolicySpec) -> PrometheusSource:
        timeout = parse_duration(policy.prometheus.timeout)
        src = self._source
        if src is None or src.address != policy.prometheus.address or src.timeout != timeout:
            src = self._source = PrometheusSource(policy.prometheus.address, timeout=timeout)
        return src


class KubernetesStatus:
    """`ports.StatusWriter`: status subresource patches on a worker thread, Events through ``post_event``."""

    def __init__(self, api: kubernetes.client.ApiClient, post_event: EventPoster) -> None:
        self._objects = kubernetes.client.CustomObjectsApi(api)
        self._post_event = post_event

    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        try:
            await asyncio.to_thread(
                self._objects.patch_namespaced_custom_object_status,
                GROUP, VERSION, namespace, plural, name, {"status": dict(status)},
            )  # fmt: skip
        except ApiException as e:
            if e.status != 404:  # deleted meanwhile: nothing to report on
                log.warning("status patch of %s/%s failed: %s %s", plural, name, e.status, e.reason)

    def post_event(self, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        self._post_event(body, kind, reason, message)


def kubernetes_ports(
    api: kubernetes.client.ApiClient,
    *,
    post_event: EventPoster,
    pods: Index,
    slices: Index,
    tables: Index,
) -> Ports:
    """The collaborators of one policy's loop. ``pods`` and ``slices`` are namespace -> `discovery.pod_summary` /
    `discovery.slice_summary`, ``tables`` is "namespace/name" -> `routestore.configmap_summary`: a cycle reads
    nothing from the API server. The metrics provider is per loop: it follows that policy's Prometheus settings."""
    return Ports(
        metrics=PrometheusMetrics(),
        endpoints=WatchedEndpoints(pods=pods, slices=slices),
        routes=WatchedRoutes(api, tables),
        status=KubernetesStatus(api, post_event),
        clock=time.time,
    )

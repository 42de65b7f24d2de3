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

from ..api.common import GROUP, VERSION
from ..api.policy import RoutingPolicySpec
from . import credentials
from .discovery import WatchedEndpoints
from .measure import MeasuredBackend, Measurement, PrometheusSource, measure_async, unmeasured
from .ports import Ports
from .routestore import WatchedRoutes

log = logging.getLogger("zeta.operator")

EventPoster = Callable[[Mapping[str, Any], str, str, str], None]
"""(object body, type Normal|Warning, reason, message) -> posts a Kubernetes Event."""

Index = Mapping[Any, Iterable[Mapping[str, Any]]]
"""A watch-fed index (a kopf.Index): key -> the summaries of the objects filed under it."""


class PrometheusMetrics:
    """`ports.MetricsProvider` over `measure`: one `PrometheusSource` per policy, rebuilt when its address,
    timeout, CA or credentials change (its HTTP connections are reused from cycle to cycle otherwise).

    The CA and credentials are read from the referenced ConfigMap and Secrets every cycle, so a rotated password
    takes effect on the next one; when they cannot be read, the cycle is unmeasured (never asked without them)."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self._api = api
        self._source: PrometheusSource | None = None

    async def measure(
        self, policy: RoutingPolicySpec, *, namespace: str, backends: Sequence[MeasuredBackend]
    ) -> Measurement:
        try:
            source = await self._prometheus(policy, namespace)
        except credentials.CredentialsError as e:
            return unmeasured(policy, backends=backends, kind="credentials", message=str(e))
        return await measure_async(source, policy, namespace=namespace, backends=backends)

    async def _prometheus(self, policy: RoutingPolicySpec, namespace: str) -> PrometheusSource:
        settings = policy.prometheus
        tls, auth = await asyncio.to_thread(credentials.resolve, self._api, namespace, settings)
        timeout = settings.timeout_seconds
        src = self._source
        wanted = (settings.address, timeout, tls, auth)
        if src is None or (src.address, src.timeout, src.tls, src.auth) != wanted:
            if src is not None:
                src.close()
            src = self._source = PrometheusSource(settings.address, timeout=timeout, tls=tls, auth=auth)
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
        metrics=PrometheusMetrics(api),
        endpoints=WatchedEndpoints(pods=pods, slices=slices),
        routes=WatchedRoutes(api, tables),
        status=KubernetesStatus(api, post_event),
        clock=time.time,
    )

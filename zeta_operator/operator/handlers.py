"""kopf glue: thin handlers that wire the watch streams to `PolicyLoop`.

- every ModelBackend is kept in an in-memory index (no API call per cycle to list them), and so is every Pod and
  EndpointSlice, in summary (`discovery.WatchedEndpoints`), and every routing-table ConfigMap the operator manages
  (`routestore.WatchedRoutes`): a cycle reads nothing from the API server, it only writes what changed;
- every RoutingPolicy gets a daemon that runs its control cycle once per `spec.adaptation.interval`, reading
  the live spec and the live index each time, so edits take effect on the next cycle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any, cast

import kopf
import kubernetes
import pydantic
from aiohttp import web

from ..api.common import GROUP, VERSION
from ..api.policy import Adaptation, RoutingPolicySpec
from .adapters import kubernetes_ports
from .controller import PENDING_RECHECK, PolicyLoop
from .discovery import pod_summary, slice_summary
from .metrics import OperatorMetrics, health_app
from .routestore import MANAGED_BY, configmap_summary

log = logging.getLogger("zeta.operator")

HEALTH_PORT_KEY = "health_port"
DEFAULT_INTERVAL = Adaptation().interval_seconds


def _client() -> kubernetes.client.ApiClient:
    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.ApiClient()


def _post_event(body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
    kopf.event(cast(kopf.Body, dict(body)), type=kind, reason=reason, message=message[:1024])


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # A watch stream that silently freezes (a dead TCP peer, a stuck proxy) is dropped and re-established.
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.watching.connect_timeout = 10
    # Progress lives in annotations; status belongs to the CRD schema and would prune kopf's fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="zeta.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="zeta.dev")
    settings.persistence.finalizer = "zeta.dev/operator"
    settings.posting.level = logging.INFO
    memo.api = _client()
    memo.metrics = OperatorMetrics()
    runner = web.AppRunner(health_app(memo.metrics), access_log=None)
    await runner.setup()
    port = int(memo.get(HEALTH_PORT_KEY, 8080))
    await web.TCPSite(runner, "0.0.0.0", port).start()
    memo.health_runner = runner
    log.info("health and metrics on :%d", port)


@kopf.on.cleanup()
async def shutdown(memo: kopf.Memo, **_: Any) -> None:
    runner = memo.get("health_runner")
    if runner is not None:
        await runner.cleanup()


@kopf.index(GROUP, VERSION, "modelbackends")
def backends_by_namespace(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[str | None, dict[str, Any]]:
    return {namespace: {"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": dict(body["metadata"]),
                        "spec": dict(body.get("spec") or {})}}  # fmt: skip


@kopf.index("v1", "pods")
def pods_by_namespace(namespace: str | None, body: kopf.Body, **_: Any) -> dict[str | None, dict[str, Any]]:
    return {namespace: pod_summary(body)}


@kopf.index("discovery.k8s.io", "v1", "endpointslices")
def endpointslices_by_namespace(
    namespace: str | None, body: kopf.Body, **_: Any
) -> dict[str | None, dict[str, Any]]:
    return {namespace: slice_summary(body)}


@kopf.index("v1", "configmaps", labels=MANAGED_BY)
def tables_by_name(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    return {f"{namespace}/{name}": configmap_summary(body)}


CYCLE_FINISH_SECONDS = 30.0
"""On stop (SIGTERM, policy deleted), how long a cycle in progress may take to finish before it is cancelled:
a cycle is stopped between cycles, never between writing the routing table and reporting it. kopf cancels a
daemon at once unless it has a cancellation_backoff; the Deployment's terminationGracePeriodSeconds covers this
plus the cancellation timeout."""


@kopf.daemon(
    GROUP, VERSION, "routingpolicies", cancellation_backoff=CYCLE_FINISH_SECONDS, cancellation_timeout=10.0
)
async def control_loop(
    stopped: kopf.DaemonStopped,
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    **kwargs: Any,
) -> None:
    backends: kopf.Index[str | None, dict[str, Any]] = kwargs["backends_by_namespace"]  # kopf passes indices
    assert namespace is not None, "RoutingPolicy is a namespaced resource"
    loop = PolicyLoop(
        namespace=namespace,
        name=name,
        ports=kubernetes_ports(
            memo.api,
            post_event=_post_event,
            pods=kwargs["pods_by_namespace"],  # kopf passes every index by its handler's name
            slices=kwargs["endpointslices_by_namespace"],
            tables=kwargs["tables_by_name"],
        ),
        metrics=memo.metrics,
    )
    policy = f"{namespace}/{name}"
    try:
        while not stopped:
            interval = _interval(body)
            started = time.monotonic()
            try:
                await loop.cycle(body, list(backends.get(namespace, [])))
            except Exception:  # one bad cycle must not end the loop: log it, try again next interval
                log.exception("control cycle of %s failed", policy)
            memo.metrics.alive(policy, interval)
            # Fixed rate: the next cycle starts one interval after this one started, not after it ended; a
            # policy waiting for backends it names to reach the index is looked at again sooner.
            period = min(interval, PENDING_RECHECK) if loop.pending else interval
            await stopped.wait(max(0.0, period - (time.monotonic() - started)))
        log.info("control loop of %s stopped between cycles (%s)", policy, stopped.reason)
    finally:
        memo.metrics.forget(policy)


def _interval(body: Mapping[str, Any]) -> float:
    """The control interval from the validated spec, as the cycle reads it (a raw ``spec`` could hold a value
    the model rejects, such as ``0s``: a busy loop); the default when the spec is invalid, which the cycle
    reports as InvalidSpec."""
    try:
        return RoutingPolicySpec.model_validate(body.get("spec") or {}).adaptation.interval_seconds
    except pydantic.ValidationError:
        return DEFAULT_INTERVAL

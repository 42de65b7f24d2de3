"""The route store: reads and writes routing tables in ConfigMaps. Nothing here decides anything.

A table is written only when its content hash differs from the live one, read back from the API each cycle
(status is not trusted). The ConfigMap is owned by its RoutingPolicy, so deleting the policy removes it. The
controller's saved state (`savedstate`) travels in an annotation of the same ConfigMap, so a restarted operator
finds it next to the weights it belongs to.

`WatchedRoutes` reads the live table from the operator's watch of the ConfigMaps it manages (a kopf index of
`configmap_summary`, see handlers.py) instead of a GET per cycle. A view that lags behind the API server is
harmless: every write carries the resourceVersion it was based on, so a write from a stale view is refused (409)
and the next cycle retries from a fresher one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import kubernetes
from kubernetes.client import ApiException

from ..api.common import API_VERSION
from ..api.table import CONFIGMAP_KEY, RoutingTable
from .ports import LiveTable, Unavailable

MANAGED_BY = {"app.kubernetes.io/managed-by": "zeta-operator"}
STATE_ANNOTATION = "zeta.dev/controller-state"


def read(api: kubernetes.client.ApiClient, namespace: str, name: str) -> LiveTable:
    core = kubernetes.client.CoreV1Api(api)
    try:
        cm = core.read_namespaced_config_map(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return LiveTable(None, None)
        raise Unavailable(f"reading ConfigMap {namespace}/{name}: {e.reason}", status=e.status) from e
    version = cm.metadata.resource_version if cm.metadata else None
    saved = ((cm.metadata.annotations if cm.metadata else None) or {}).get(STATE_ANNOTATION)
    return _live((cm.data or {}).get(CONFIGMAP_KEY), version, saved)


def configmap_summary(cm: Mapping[str, Any]) -> dict[str, Any]:
    """What `WatchedRoutes` needs of a ConfigMap: its table text, resourceVersion and saved state."""
    meta = cm.get("metadata") or {}
    return {
        "resourceVersion": meta.get("resourceVersion"),
        "table": (cm.get("data") or {}).get(CONFIGMAP_KEY),
        "savedState": (meta.get("annotations") or {}).get(STATE_ANNOTATION),
    }


def _live(text: str | None, version: str | None, saved: str | None) -> LiveTable:
    if text is None:
        return LiveTable(None, version, f"no {CONFIGMAP_KEY} key", saved)
    try:
        return LiveTable(RoutingTable.from_json(text), version, None, saved)
    except ValueError as e:  # pydantic.ValidationError is a ValueError
        return LiveTable(None, version, f"invalid table: {str(e)[:300]}", saved)


def write(
    api: kubernetes.client.ApiClient,
    namespace: str,
    name: str,
    table: RoutingTable,
    *,
    owner: Mapping[str, str],
    live: LiveTable,
    saved_state: str | None = None,
) -> None:
    """Create or replace the ConfigMap; a concurrent change makes this raise 409 and the next cycle retries."""
    core = kubernetes.client.CoreV1Api(api)
    annotations = {"zeta.dev/table-version": str(table.version), "zeta.dev/table-hash": table.hash}
    if saved_state is not None:
        annotations[STATE_ANNOTATION] = saved_state
    body = kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels={**MANAGED_BY, "zeta.dev/policy": owner["name"]},
            annotations=annotations,
            owner_references=[
                kubernetes.client.V1OwnerReference(
                    api_version=API_VERSION,
                    kind="RoutingPolicy",
                    name=owner["name"],
                    uid=owner["uid"],
                    controller=True,
                )
            ],
            resource_version=live.revision,
        ),
        data={CONFIGMAP_KEY: table.to_json()},
    )
    try:
        if live.revision is None:
            core.create_namespaced_config_map(namespace, body)
        else:
            core.replace_namespaced_config_map(name, namespace, body)
    except ApiException as e:
        raise Unavailable(f"writing ConfigMap {namespace}/{name}: {e.reason}", status=e.status) from e


class ConfigMapRoutes:
    """`ports.RouteStore` over ConfigMaps, with the synchronous client on worker threads."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.api = api

    async def read(self, namespace: str, name: str) -> LiveTable:
        return await asyncio.to_thread(read, self.api, namespace, name)

    async def write(
        self,
        namespace: str,
        name: str,
        table: RoutingTable,
        *,
        owner: Mapping[str, str],
        live: LiveTable,
        saved_state: str | None,
    ) -> None:
        await asyncio.to_thread(
            write, self.api, namespace, name, table, owner=owner, live=live, saved_state=saved_state
        )


class WatchedRoutes(ConfigMapRoutes):
    """`ports.RouteStore` that reads from a watch-fed index ("namespace/name" -> `configmap_summary`) and writes
    like `ConfigMapRoutes`."""

    def __init__(
        self, api: kubernetes.client.ApiClient, index: Mapping[str, Iterable[Mapping[str, Any]]]
    ) -> None:
        super().__init__(api)
        self.index = index

    async def read(self, namespace: str, name: str) -> LiveTable:
        found = next(iter(self.index.get(f"{namespace}/{name}", ())), None)
        if found is None:
            return LiveTable(None, None)
        return _live(found.get("table"), found.get("resourceVersion"), found.get("savedState"))

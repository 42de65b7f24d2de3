"""The route store: reads and writes routing tables in ConfigMaps. Nothing here decides anything.

A table is written only when its content hash differs from the live one, as the API server's watch shows it
(status is not trusted). The ConfigMap is owned by its RoutingPolicy, so deleting the policy removes it. The
controller's saved state (`savedstate`) travels in an annotation of the same ConfigMap, so a restarted operator
finds it next to the weights it belongs to.

`WatchedRoutes` reads the live table from the operator's watch of the ConfigMaps it manages (a kopf index of
`configmap_summary`, see handlers.py), not with a GET per cycle. A view that lags behind the API server is
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


class WatchedRoutes:
    """`ports.RouteStore` that reads from a watch-fed index ("namespace/name" -> `configmap_summary`) and writes
    with the synchronous client on a worker thread."""

    def __init__(
        self, api: kubernetes.client.ApiClient, index: Mapping[str, Iterable[Mapping[str, Any]]]
    ) -> None:
        self.api, self.index = api, index

    async def read(self, namespace: str, name: str) -> LiveTable:
        found = next(iter(self.index.get(f"{namespace}/{name}", ())), None)
        if found is None:
            return LiveTable(None, None)
        return _live(found.get("table"), found.get("resourceVersion"), found.get("savedState"))

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

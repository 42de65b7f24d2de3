"""The route store: reads and writes routing tables in ConfigMaps. Nothing here decides anything.

A table is written only when its content hash differs from the live one, read back from the API each cycle
(status is not trusted). The ConfigMap is owned by its RoutingPolicy, so deleting the policy removes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client import ApiException

from ..api.common import API_VERSION
from ..api.table import CONFIGMAP_KEY, RoutingTable

MANAGED_BY = {"app.kubernetes.io/managed-by": "zeta-operator"}


@dataclass(frozen=True)
class LiveTable:
    table: RoutingTable | None  # None: no ConfigMap yet, or its content is not a valid table
    resource_version: str | None
    problem: str | None = None


def read(api: kubernetes.client.ApiClient, namespace: str, name: str) -> LiveTable:
    core = kubernetes.client.CoreV1Api(api)
    try:
        cm = core.read_namespaced_config_map(name, namespace)
    except ApiException as e:
        if e.status == 404:
            return LiveTable(None, None)
        raise
    version = cm.metadata.resource_version if cm.metadata else None
    text = (cm.data or {}).get(CONFIGMAP_KEY)
    if text is None:
        return LiveTable(None, version, f"no {CONFIGMAP_KEY} key")
    try:
        return LiveTable(RoutingTable.from_json(text), version)
    except ValueError as e:  # pydantic.ValidationError is a ValueError
        return LiveTable(None, version, f"invalid table: {str(e)[:300]}")


def write(
    api: kubernetes.client.ApiClient,
    namespace: str,
    name: str,
    table: RoutingTable,
    *,
    owner: dict[str, Any],
    live: LiveTable,
) -> None:
    """Create or replace the ConfigMap; a concurrent change makes this raise 409 and the next cycle retries."""
    core = kubernetes.client.CoreV1Api(api)
    body = kubernetes.client.V1ConfigMap(
        metadata=kubernetes.client.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels={**MANAGED_BY, "zeta.dev/policy": owner["name"]},
            annotations={"zeta.dev/table-version": str(table.version), "zeta.dev/table-hash": table.hash},
            owner_references=[
                kubernetes.client.V1OwnerReference(
                    api_version=API_VERSION,
                    kind="RoutingPolicy",
                    name=owner["name"],
                    uid=owner["uid"],
                    controller=True,
                )
            ],
            resource_version=live.resource_version,
        ),
        data={CONFIGMAP_KEY: table.to_json()},
    )
    if live.resource_version is None:
        core.create_namespaced_config_map(namespace, body)
    else:
        core.replace_namespaced_config_map(name, namespace, body)

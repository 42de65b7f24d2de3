"""Endpoint discovery: where each backend can be reached right now (ready endpoints only).

A Service's EndpointSlices, ready pods matching a selector, or static URLs. Pod names are kept, because the
CPU, memory and engine metrics of a real cluster are labelled by pod.

`WatchedEndpoints` answers from what the operator's watches hold (kopf indices over Pods and EndpointSlices,
kept current by one watch per kind, see handlers.py): a cycle costs no API request for discovery, however many
policies and backends. `pod_summary` and `slice_summary` keep only what `resolve` reads, so the indices stay
small. `NamespaceSnapshots` is the same port over LIST calls, for a caller without watches.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes
from kubernetes.client import ApiException

from ..api.backend import ModelBackendSpec
from .ports import Unavailable

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, order=True)
class Endpoint:
    url: str
    pod: str | None = None


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _from_slices(slices: Sequence[Mapping[str, Any]], *, port: int, scheme: str) -> list[Endpoint]:
    found: set[Endpoint] = set()
    for s in slices:
        if port not in {p.get("port") for p in s.get("ports") or []}:
            continue
        for ep in s.get("endpoints") or []:
            cond = ep.get("conditions") or {}
            # A nil `ready` means "unknown" and is to be read as ready; terminating endpoints take no new work.
            if cond.get("ready") is False or cond.get("terminating"):
                continue
            ref = ep.get("targetRef") or {}
            pod = ref.get("name") if ref.get("kind") == "Pod" else None
            for address in ep.get("addresses") or []:
                found.add(Endpoint(f"{scheme}://{_host(address)}:{port}", pod))
    return sorted(found)


def _from_pods(pods: Sequence[Mapping[str, Any]], *, port: int, scheme: str) -> list[Endpoint]:
    found = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp") or not status.get("podIP"):
            continue
        if any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []
        ):
            found.append(Endpoint(f"{scheme}://{_host(status['podIP'])}:{port}", meta.get("name")))
    return sorted(found)


def pod_summary(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What `resolve` reads of a Pod."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    return {
        "metadata": {
            "name": meta.get("name"),
            "labels": dict(meta.get("labels") or {}),
            "deletionTimestamp": meta.get("deletionTimestamp"),
        },
        "status": {
            "podIP": status.get("podIP"),
            "conditions": [
                {"type": c.get("type"), "status": c.get("status")}
                for c in status.get("conditions") or []
                if c.get("type") == "Ready"
            ],
        },
    }


def slice_summary(endpoint_slice: Mapping[str, Any]) -> dict[str, Any]:
    """What `resolve` reads of an EndpointSlice."""
    return {
        "metadata": {"labels": dict((endpoint_slice.get("metadata") or {}).get("labels") or {})},
        "ports": [{"port": p.get("port")} for p in endpoint_slice.get("ports") or []],
        "endpoints": [
            {
                "addresses": list(e.get("addresses") or []),
                "conditions": dict(e.get("conditions") or {}),
                "targetRef": {k: v for k, v in (e.get("targetRef") or {}).items() if k in ("kind", "name")},
            }
            for e in endpoint_slice.get("endpoints") or []
        ],
    }


def _labels(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("labels") or {}


def resolve(
    spec: ModelBackendSpec, slices: Sequence[Mapping[str, Any]], pods: Sequence[Mapping[str, Any]]
) -> list[Endpoint]:
    """One backend's ready endpoints, sorted (an unchanged set gives an unchanged table)."""
    e = spec.endpoints
    if e.static is not None:
        return sorted(Endpoint(url.rstrip("/")) for url in e.static)
    if e.service is not None:
        own = [s for s in slices if _labels(s).get(SERVICE_NAME_LABEL) == e.service.name]
        return _from_slices(own, port=e.service.port, scheme=e.scheme)
    if e.selector is not None:
        wanted = e.selector.match_labels.items()
        own = [p for p in pods if all(_labels(p).get(k) == v for k, v in wanted)]
        return _from_pods(own, port=e.selector.port, scheme=e.scheme)
    return []


def _list(api: kubernetes.client.ApiClient, namespace: str, kind: str) -> list[Mapping[str, Any]]:
    """A list call read as plain JSON: several times cheaper than the client's model objects for big lists."""
    raw: Any  # with _preload_content=False the client returns the HTTP response, not the typed list
    if kind == "endpointslices":
        raw = kubernetes.client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            namespace, _preload_content=False
        )
    else:
        raw = kubernetes.client.CoreV1Api(api).list_namespaced_pod(namespace, _preload_content=False)
    return list(json.loads(raw.data).get("items") or [])


class NamespaceSnapshots:
    """`ports.EndpointSource` from LIST calls: EndpointSlices and pods per namespace, listed at most once per `max_age` seconds however many policies ask
    (every policy in a namespace shares one list call), and one list in flight per namespace at a time."""

    def __init__(self, api: kubernetes.client.ApiClient, *, max_age: float = 1.0) -> None:
        self.api, self.max_age = api, max_age
        self._cache: dict[tuple[str, str], tuple[float, list[Mapping[str, Any]]]] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def items(self, namespace: str, kind: str) -> list[Mapping[str, Any]]:
        key = (namespace, kind)
        async with self._locks.setdefault(key, asyncio.Lock()):
            cached = self._cache.get(key)
            if cached is not None and time.monotonic() - cached[0] < self.max_age:
                return cached[1]
            try:
                items = await asyncio.to_thread(_list, self.api, namespace, kind)
            except ApiException as e:
                raise Unavailable(f"listing {kind} in {namespace}: {e.reason}", status=e.status) from e
            self._cache[key] = (time.monotonic(), items)
            return items

    async def resolve_all(
        self, namespace: str, specs: Mapping[str, ModelBackendSpec]
    ) -> dict[str, list[Endpoint]]:
        """Every backend's endpoints from at most two list calls: EndpointSlices and pods."""
        wants_slices = any(s.endpoints.service is not None for s in specs.values())
        wants_pods = any(s.endpoints.selector is not None for s in specs.values())
        slices = await self.items(namespace, "endpointslices") if wants_slices else []
        pods = await self.items(namespace, "pods") if wants_pods else []
        return {name: resolve(spec, slices, pods) for name, spec in specs.items()}


class WatchedEndpoints:
    """`ports.EndpointSource` from watch-fed indices: namespace -> summaries of its Pods / EndpointSlices."""

    def __init__(
        self,
        *,
        pods: Mapping[str | None, Iterable[Mapping[str, Any]]],
        slices: Mapping[str | None, Iterable[Mapping[str, Any]]],
    ) -> None:
        self.pods, self.slices = pods, slices

    async def resolve_all(
        self, namespace: str, specs: Mapping[str, ModelBackendSpec]
    ) -> dict[str, list[Endpoint]]:
        slices = list(self.slices.get(namespace, ()))
        pods = list(self.pods.get(namespace, ()))
        return {name: resolve(spec, slices, pods) for name, spec in specs.items()}

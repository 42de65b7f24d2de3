"""Endpoint discovery: where each backend can be reached right now (ready endpoints only).

A Service's EndpointSlices, ready pods matching a selector, or static URLs. Pod names are kept, because the
CPU, memory and engine metrics of a real cluster are labelled by pod.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import kubernetes

from ..api.backend import ModelBackendSpec

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, order=True)
class Endpoint:
    url: str
    pod: str | None = None


def _host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _from_slices(slices: Sequence[Any], *, port: int, scheme: str) -> list[Endpoint]:
    found: set[Endpoint] = set()
    for s in slices:
        ports = {p.port for p in (getattr(s, "ports", None) or []) if p.port is not None}
        if port not in ports:
            continue
        for ep in getattr(s, "endpoints", None) or []:
            cond = ep.conditions
            # A nil `ready` means "unknown" and is to be read as ready; terminating endpoints take no new work.
            if cond is not None and (cond.ready is False or cond.terminating):
                continue
            pod = ep.target_ref.name if ep.target_ref is not None and ep.target_ref.kind == "Pod" else None
            for address in ep.addresses or []:
                found.add(Endpoint(f"{scheme}://{_host(address)}:{port}", pod))
    return sorted(found)


def _from_pods(pods: Sequence[Any], *, port: int, scheme: str) -> list[Endpoint]:
    found = []
    for pod in pods:
        meta, status = pod.metadata, pod.status
        if meta.deletion_timestamp is not None or status is None or not status.pod_ip:
            continue
        ready = any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])
        if ready:
            found.append(Endpoint(f"{scheme}://{_host(status.pod_ip)}:{port}", meta.name))
    return sorted(found)


def resolve(api: kubernetes.client.ApiClient, namespace: str, spec: ModelBackendSpec) -> list[Endpoint]:
    """The backend's ready endpoints, sorted (so an unchanged set gives an unchanged table)."""
    e = spec.endpoints
    if e.static is not None:
        return sorted(Endpoint(url.rstrip("/")) for url in e.static)
    if e.service is not None:
        slices = kubernetes.client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            namespace, label_selector=f"{SERVICE_NAME_LABEL}={e.service.name}"
        )
        return _from_slices(slices.items, port=e.service.port, scheme=e.scheme)
    if e.selector is not None:
        selector = ",".join(f"{k}={v}" for k, v in sorted(e.selector.match_labels.items()))
        pods = kubernetes.client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector)
        return _from_pods(pods.items, port=e.selector.port, scheme=e.scheme)
    return []


async def resolve_async(
    api: kubernetes.client.ApiClient, namespace: str, spec: ModelBackendSpec
) -> list[Endpoint]:
    return await asyncio.to_thread(resolve, api, namespace, spec)

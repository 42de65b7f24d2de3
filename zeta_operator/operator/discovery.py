"""Endpoint discovery: where each backend can be reached right now (ready endpoints only).

A Service's EndpointSlices, ready pods matching a selector, or static URLs. Pod names are kept, because the
CPU, memory and engine metrics of a real cluster are labelled by pod.

`WatchedEndpoints` answers from what the operator's watches hold (kopf indices over Pods and EndpointSlices,
kept current by one watch per kind, see handlers.py): a cycle costs no API request for discovery, however many
policies and backends. `pod_summary` and `slice_summary` keep only what `resolve` reads, so the indices stay
small.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.backend import ModelBackendSpec

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

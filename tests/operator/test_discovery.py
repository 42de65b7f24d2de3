"""Endpoint discovery: the summaries the watch indices keep resolve exactly as the full objects do."""

from __future__ import annotations

import asyncio
from typing import Any

from zeta_operator.api.backend import ModelBackendSpec
from zeta_operator.operator.discovery import (
    Endpoint,
    WatchedEndpoints,
    pod_summary,
    resolve,
    slice_summary,
)


def pod(
    name: str, ip: str | None, *, ready: bool, app: str = "coder", deleting: bool = False
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "ns", "labels": {"app": app}, "uid": f"uid-{name}",
                            "managedFields": [{"manager": "kubelet"}], "resourceVersion": "7"}  # fmt: skip
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "server", "image": "vllm"}]},
        "status": {
            "podIP": ip,
            "conditions": [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True" if ready else "False"},
            ],
        },
    }


def endpoint_slice(service: str, port: int, endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{service}-abcde", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": endpoints,
    }


PODS = [
    pod("coder-0", "10.0.0.1", ready=True),
    pod("coder-1", "10.0.0.2", ready=False),
    pod("coder-2", "10.0.0.3", ready=True, deleting=True),
    pod("coder-3", None, ready=True),
    pod("other-0", "10.0.0.9", ready=True, app="other"),
]
SLICES = [
    endpoint_slice("big", 8000, [
        {"addresses": ["10.0.1.1"], "conditions": {"ready": True}, "targetRef": {"kind": "Pod", "name": "big-0",
                                                                                  "uid": "u"}, "nodeName": "n1"},
        {"addresses": ["10.0.1.2"], "conditions": {"ready": False}, "targetRef": {"kind": "Pod", "name": "big-1"}},
        {"addresses": ["fd00::3"], "conditions": {}, "targetRef": {"kind": "Pod", "name": "big-2"}},
        {"addresses": ["10.0.1.4"], "conditions": {"ready": True, "terminating": True}},
    ]),
    endpoint_slice("big", 9000, [{"addresses": ["10.0.1.5"], "conditions": {"ready": True}}]),
]  # fmt: skip
SPECS = {
    "coder": ModelBackendSpec.model_validate(
        {
            "model": "coder",
            "capabilities": {"tasks": ["code"], "maxComplexity": 3},
            "endpoints": {"selector": {"matchLabels": {"app": "coder"}, "port": 8000}},
        }
    ),
    "big": ModelBackendSpec.model_validate(
        {
            "model": "big",
            "capabilities": {"tasks": ["code"], "maxComplexity": 3},
            "endpoints": {"service": {"name": "big", "port": 8000}},
        }
    ),
}


def test_summaries_resolve_like_the_full_objects() -> None:
    pods, slices = [pod_summary(p) for p in PODS], [slice_summary(s) for s in SLICES]
    for spec in SPECS.values():
        assert resolve(spec, slices, pods) == resolve(spec, SLICES, PODS)
    assert resolve(SPECS["coder"], slices, pods) == [Endpoint("http://10.0.0.1:8000", "coder-0")]
    assert resolve(SPECS["big"], slices, pods) == [
        Endpoint("http://10.0.1.1:8000", "big-0"),
        Endpoint("http://[fd00::3]:8000", "big-2"),
    ]


def test_watched_endpoints_answer_from_the_indices_of_the_namespace() -> None:
    source = WatchedEndpoints(
        pods={
            "ns": [pod_summary(p) for p in PODS],
            "elsewhere": [pod_summary(pod("coder-9", "10.9.9.9", ready=True))],
        },
        slices={"ns": [slice_summary(s) for s in SLICES]},
    )
    found = asyncio.run(source.resolve_all("ns", SPECS))
    assert [e.pod for e in found["coder"]] == ["coder-0"]
    assert [e.pod for e in found["big"]] == ["big-0", "big-2"]
    assert asyncio.run(source.resolve_all("empty", SPECS)) == {"coder": [], "big": []}

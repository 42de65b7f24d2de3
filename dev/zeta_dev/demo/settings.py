"""What the demo runs: the sample ModelBackends and RoutingPolicy (manifests/samples), on simulated engines small
enough that the demo's code burst overloads the 7B coder, with a policy that adapts fast enough to watch.
The process demo and the node demo (``--node``) run the same settings."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from ..localcluster.controlplane import REPO_ROOT

NAMESPACE = "zeta-system"  # where manifests/ puts the operator and the router
SAMPLES = REPO_ROOT / "manifests" / "samples"
FLEET = {  # sample backend -> simulated engine (size in billions, concurrent sequences)
    "general-4b": (4, 16),
    "coder-7b": (7, 6),
    "large-14b": (14, 6),
}
POLICY = {  # paths under the sample policy's spec -> the demo's value
    "prometheus/timeout": "1s",
    "prometheus/window": "10s",
    "adaptation": {
        "interval": "2s",
        "staleAfter": "30s",
        "smoothing": 0.6,
        "maxStep": 0.25,
        "blackout": "2s",
    },
    # Engine queue depth is the overload signal here; latency counts as full load only at 1.5x the objective,
    # because the 14B model is slower than a tight objective even when idle (slow is not busy).
    "thresholds": {"queueDepth": 2, "latency": 1.5},
}


def capacity(name: str) -> dict[str, int]:
    """The demo backend's ``spec.capacity``: its engine's sequences, plus a little room to queue."""
    return {"maxConcurrency": FLEET[name][1] + 2}


def sample_overrides() -> dict[str, dict[str, Any]]:
    """The demo's settings as `zeta_on_node.apply_samples` takes them: per sample object, paths under spec."""
    return {"demo": POLICY, **{name: {"capacity": capacity(name)} for name in FLEET}}


def sample_manifest(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((SAMPLES / f"{name}.yaml").read_text())
    return doc


def demo_backend(name: str, port: int) -> dict[str, Any]:
    """The sample backend, reached through its (simulated) pod instead of a Service: EndpointSlices may not
    point at 127.0.0.1, pods' status may."""
    doc = sample_manifest(name)
    doc["spec"]["endpoints"] = {"selector": {"matchLabels": {"app": name}, "port": port}}
    doc["spec"]["capacity"] = capacity(name)
    return doc


def demo_policy(prometheus_url: str) -> dict[str, Any]:
    doc = copy.deepcopy(sample_manifest("routingpolicy"))
    doc["spec"]["prometheus"]["address"] = prometheus_url
    for path, value in POLICY.items():
        *parents, key = path.split("/")
        target = doc["spec"]
        for parent in parents:
            target = target.setdefault(parent, {})
        target[key] = copy.deepcopy(value)
    return doc

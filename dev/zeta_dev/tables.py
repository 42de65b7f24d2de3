"""Small, valid routing tables for tests and smoke checks that need a router to start, not a fleet to route."""

from __future__ import annotations

from zeta_operator.api.table import RoutingTable


def one_backend_table(
    *, policy: str, model: str, url: str = "http://127.0.0.1:9", version: int = 1
) -> RoutingTable:
    """One chat backend at ``url`` (the discard port by default: nothing answers) serving one class."""
    wire = {
        "policy": policy,
        "queue": {"maxSize": 8, "maxWaitSeconds": 5.0, "agingSeconds": 1.0},
        "backends": [
            {
                "name": model,
                "model": model,
                "tasks": ["chat"],
                "maxComplexity": 5,
                "contextWindow": 4096,
                "endpoints": [{"url": url, "maxConcurrency": 4}],
            }
        ],
        "classes": [
            {
                "name": "chat",
                "taskType": "chat",
                "complexity": {"min": 1, "max": 5},
                "priority": 5,
                "latencyObjectiveSeconds": 5.0,
                "weights": {model: 1.0},
            }
        ],
    }
    return RoutingTable.model_validate(wire).sealed(version=version, generated_at="2025-01-01T00:00:00Z")

"""Small, valid routing tables for tests and smoke checks that need a router to start, not a fleet to route."""

from __future__ import annotations

from collections.abc import Sequence

from zeta_operator.api.table import RoutingTable


def one_backend_table(
    *,
    policy: str,
    model: str,
    url: str = "http://127.0.0.1:9",
    version: int = 1,
    tasks: Sequence[str] = ("chat",),
) -> RoutingTable:
    """One backend at ``url`` (the discard port by default: nothing answers) serving ``tasks``, one class each
    (named after its task type)."""
    wire = {
        "policy": policy,
        "queue": {"maxSize": 8, "maxWaitSeconds": 5.0, "agingSeconds": 1.0},
        "backends": [
            {
                "name": model,
                "model": model,
                "tasks": list(tasks),
                "maxComplexity": 5,
                "contextWindow": 4096,
                "endpoints": [{"url": url, "maxConcurrency": 4}],
            }
        ],
        "classes": [
            {
                "name": task,
                "taskType": task,
                "complexity": {"min": 1, "max": 5},
                "priority": 5,
                "latencyObjectiveSeconds": 5.0,
                "weights": {model: 1.0},
            }
            for task in tasks
        ],
    }
    return RoutingTable.model_validate(wire).sealed(version=version, generated_at="2025-01-01T00:00:00Z")

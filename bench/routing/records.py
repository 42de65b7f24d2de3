"""What a run produces, in either mode: one record per request and the routing table's weights over time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Status = Literal["ok", "rejected", "error"]


@dataclass(slots=True)
class RequestRecord:
    sent_at: float
    """Seconds since the start of the workload."""
    task_class: str
    complexity: int
    status: Status = "error"
    latency: float = 0.0
    """End to end as the client saw it (router queue included)."""
    backend: str = ""
    retries: int = 0
    overhead_ms: float | None = None
    """The proxy's own time for this request, where it says (LiteLLM's x-litellm-overhead-duration-ms)."""


@dataclass
class RunResult:
    scenario: str
    strategy: str
    mode: str
    records: list[RequestRecord]
    weights: list[tuple[float, dict[str, dict[str, float]]]] = field(default_factory=list)
    """(time, class -> backend -> share) whenever the router's table changed (Zeta only)."""
    violations: int = 0
    """Requests served by a backend that is not capable of them (task type or complexity)."""
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

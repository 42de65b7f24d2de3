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
    """The request's true class (its prompt's labels); its objective is the one that counts."""
    complexity: int
    """True complexity of the prompt."""
    status: Status = "error"
    latency: float = 0.0
    """End to end as the client saw it (router queue included)."""
    backend: str = ""
    retries: int = 0
    overhead_ms: float | None = None
    """The proxy's own time for this request, where it says (LiteLLM's x-litellm-overhead-duration-ms)."""
    task: str = ""
    """True task type of the prompt."""
    prompt_id: str = ""
    routed_class: str = ""
    """The class the router's classifier put it in ("" where the proxy does not say)."""
    quality: float = 0.0
    """Answer quality of the backend that answered, for the true task type and complexity (0 if incapable)."""
    cost: float = 0.0
    """``spec.cost`` of the backend that answered (0 if unanswered)."""
    allowed: frozenset[str] = frozenset()
    """The backends the router's capability filter and spill gate let it use (DES only): what bounds any
    balancer working from the router's classification (`scenario.given_router`)."""


@dataclass
class RunResult:
    scenario: str
    strategy: str
    mode: str
    records: list[RequestRecord]
    weights: list[tuple[float, dict[str, dict[str, float]]]] = field(default_factory=list)
    """(time, class -> backend -> share) whenever the router's table changed (Zeta only)."""
    violations: int = 0
    """Requests answered by a backend not capable of their true task type or complexity."""
    routing_violations: int = 0
    """Requests answered by a backend not capable of the task type and complexity the router's classifier gave
    them: the router breaking its own decision (never expected, whatever the classifier's mistakes)."""
    wall_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

"""The routing table: what the operator writes to a ConfigMap and every router reads.

It is self-contained (the router never asks the API server anything on the request path), versioned (the
version grows by one whenever the content changes) and hashed (the hash covers everything but version,
generatedAt and hash, so an unchanged table is never rewritten).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field, model_validator

from .common import BackendState, BaseUrl, Complexity, Model, Name
from .policy import ClassifierSettings, ComplexityRange, QueueSettings, TaskClass

CONFIGMAP_KEY = "routing-table.json"
"""The ConfigMap data key that holds the table."""


class TableEndpoint(Model):
    url: BaseUrl
    max_concurrency: int = Field(ge=1)
    ready_since: str | None = Field(default=None, description="When the operator first saw it ready.")


class TableBackend(Model):
    name: Name
    model: str = Field(min_length=1, description="Served model name the request's `model` is rewritten to.")
    tasks: list[Name] = Field(min_length=1)
    max_complexity: Complexity
    context_window: int = Field(ge=1)
    endpoints: list[TableEndpoint] = Field(default_factory=list)
    state: BackendState = "Unknown"
    size_billions: float | None = None
    cost: float = 1.0


class TableClass(Model):
    name: Name
    task_type: Name
    complexity: ComplexityRange
    priority: int = Field(ge=0, le=9)
    latency_objective_seconds: float = Field(gt=0)
    weights: dict[str, float] = Field(description="Backend name to share; sums to 1 over capable backends.")
    preferred: list[Name] = Field(
        default_factory=list,
        description="The class's preferred backends (policy order): the router never spills a request it is "
        "unsure of to a backend with a lower complexity ceiling than theirs.",
    )
    reasons: dict[str, str] = Field(default_factory=dict, description="Why each backend has its share.")

    @classmethod
    def of(
        cls, c: TaskClass, weights: dict[str, float] | None = None, reasons: dict[str, str] | None = None
    ) -> TableClass:
        """The policy's class as the table carries it (without weights: what the classifier reads of it)."""
        return cls(
            name=c.name,
            task_type=c.task_type,
            complexity=c.complexity,
            priority=c.priority,
            latency_objective_seconds=c.latency_objective_seconds,
            weights=weights or {},
            preferred=list(c.preferred),
            reasons=reasons or {},
        )

    @model_validator(mode="after")
    def _weights_are_a_distribution(self) -> TableClass:
        if any(w < 0 for w in self.weights.values()):
            raise ValueError(f"class {self.name}: negative weight")
        total = sum(self.weights.values())
        if self.weights and abs(total - 1.0) > 1e-6:
            raise ValueError(f"class {self.name}: weights sum to {total:.6f}, not 1")
        return self


class TableQueue(Model):
    max_size: int = Field(ge=0)
    max_wait_seconds: float = Field(gt=0)
    aging_seconds: float = Field(gt=0)
    shed_late: bool = False

    @classmethod
    def of(cls, q: QueueSettings) -> TableQueue:
        return cls(
            max_size=q.max_size,
            max_wait_seconds=q.max_wait_seconds,
            aging_seconds=q.aging_seconds,
            shed_late=q.shed_late,
        )


class RoutingTable(Model):
    api_version: Literal["zeta.dev/v1alpha1"] = "zeta.dev/v1alpha1"
    kind: Literal["RoutingTable"] = "RoutingTable"
    policy: str = Field(description="namespace/name of the RoutingPolicy that wrote it.")
    version: int = Field(default=0, ge=0)
    generated_at: str = ""
    hash: str = ""
    default_class: Name | None = None
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)
    queue: TableQueue
    backends: list[TableBackend]
    classes: list[TableClass] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> RoutingTable:
        names = [b.name for b in self.backends]
        if len(set(names)) != len(names):
            raise ValueError("backend names must be unique")
        by_name = {b.name: b for b in self.backends}
        for c in self.classes:
            for name in c.weights:
                b = by_name.get(name)
                if b is None:
                    raise ValueError(f"class {c.name}: weight for unknown backend {name!r}")
                if c.task_type not in b.tasks or b.max_complexity < c.complexity.max:
                    raise ValueError(f"class {c.name}: backend {name} is not capable of it")
        if self.default_class and self.default_class not in {c.name for c in self.classes}:
            raise ValueError(f"defaultClass {self.default_class!r} is not a class")
        served = {c.task_type for c in self.classes}
        for i, e in enumerate(self.classifier.examples):
            if e.task_type not in served:
                raise ValueError(f"classifier.examples[{i}]: no class has task type {e.task_type!r}")
        return self

    def content_hash(self) -> str:
        """sha256 of the content, ignoring version, generatedAt and hash."""
        body = self.to_wire()
        for key in ("version", "generatedAt", "hash"):
            body.pop(key, None)
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    def sealed(self, *, version: int, generated_at: str) -> RoutingTable:
        """A copy stamped with its version, time and content hash, ready to write."""
        return self.model_copy(
            update={"version": version, "generated_at": generated_at, "hash": self.content_hash()}
        )

    def to_json(self) -> str:
        return json.dumps(self.to_wire(), sort_keys=True, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> RoutingTable:
        """Parse and validate; raises pydantic.ValidationError or ValueError with the reason."""
        data: Any = json.loads(text)
        table = cls.model_validate(data)
        if table.hash and table.hash != table.content_hash():
            raise ValueError("routing table hash does not match its content")
        return table

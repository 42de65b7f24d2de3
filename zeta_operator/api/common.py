"""Types shared by the custom resources and the routing table.

Every model here is the single source of truth for one part of a CRD schema: `crdgen` turns the pydantic
JSON schema into the structural OpenAPI schema in `crds/`, and a test keeps the two equal.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel

GROUP = "zeta.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"


def parse_duration(text: str) -> float:
    """Seconds in a Kubernetes-style duration such as ``5s``, ``1m30s`` or ``250ms``."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 500ms, 5s, 1m30s or 1h")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))


MAX_DURATION_SECONDS = (2**63 - 1) / 1e9
"""The longest duration CEL (Go's time.Duration, int64 nanoseconds, about 292 years) can hold: the apiserver
rejects a longer one, so the models do too."""


def _positive_duration(text: str) -> str:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"duration {text!r} must be greater than zero")
    if seconds > MAX_DURATION_SECONDS:
        raise ValueError(f"duration {text!r} is longer than 292 years, the longest Kubernetes can hold")
    return text


Duration = Annotated[
    str,
    Field(pattern=DURATION_PATTERN, max_length=32, json_schema_extra={"x-zeta-duration": True}),
    AfterValidator(_positive_duration),
]
"""A positive Kubernetes-style duration (``500ms``, ``5s``, ``1m30s``); CEL checks it is above zero."""


@functools.cache
def _duration_fields(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(
        name
        for name, info in model.model_fields.items()
        if isinstance(extra := info.json_schema_extra, dict) and extra.get("x-zeta-duration") is True
    )


Name = Annotated[
    str,
    Field(min_length=1, max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
]
"""A DNS-1123 label: backend, task-class and task-type names."""

BaseUrl = Annotated[str, Field(pattern=r"^https?://[^/\s]+$", max_length=256)]
"""scheme://host:port of a model server, without a path."""

PromQL = Annotated[str, Field(min_length=1, max_length=4096)]
"""A PromQL template; {placeholders} are filled by the operator."""

Complexity = Annotated[int, Field(ge=1, le=5)]
"""How hard a request is, from 1 (trivial) to 5 (hardest). Named levels: low=1, medium=3, high=5."""

COMPLEXITY_NAMES = {"trivial": 1, "low": 1, "simple": 2, "medium": 3, "hard": 4, "high": 5, "complex": 4}

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
"""A number between 0 and 1 inclusive."""

BackendState = Literal["Healthy", "Saturated", "Overloaded", "Unavailable", "Unknown"]


def cel_rules(*rules: tuple[str, str]) -> ConfigDict:
    """Model config carrying CRD CEL rules as (rule, message); each model mirrors them in a validator."""
    return ConfigDict(
        json_schema_extra={"x-kubernetes-validations": [{"rule": r, "message": m} for r, m in rules]}
    )


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    _seconds: dict[str, float] = PrivateAttr(default_factory=dict)
    """Every `Duration` field in seconds, parsed once when the model is built (the wire keeps the strings)."""

    def model_post_init(self, context: Any, /) -> None:
        self._seconds = {
            name: parse_duration(value)
            for name in _duration_fields(type(self))
            if isinstance(value := getattr(self, name), str)
        }

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        if update:
            copy.model_post_init(None)  # a replaced duration gets its seconds too
        return copy

    def seconds(self, name: str) -> float:
        """The seconds of the `Duration` field `name` (models expose typed ``*_seconds`` properties)."""
        return self._seconds[name]

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict as it appears in Kubernetes (camelCase, unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class Condition(Model):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str = Field(max_length=64, description="Ready, MetricsAvailable, Degraded or InvalidSpec.")
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(max_length=128, description="A CamelCase word for programs.")
    message: str = Field(default="", max_length=4096, description="Why, for people.")
    last_transition_time: str = Field(max_length=64, description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(default=None, ge=0)

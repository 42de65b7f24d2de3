"""What `decide` reads and returns, and what it remembers between cycles (`ControllerState`, stored as JSON
by the operator); the policy's knobs in the units the rules use; small shared utilities."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ...api.common import BackendState
from ...api.policy import RoutingPolicySpec

Signal = Literal["cpu", "memory", "queueDepth", "kvCache", "errorRate", "running"]


_UNITS = 10_000
"""Weights are multiples of 1/_UNITS (four decimals)."""


_EPS = 1e-9


_RESOLUTION_BAND = 2.5 / _UNITS
"""Differences this small are rounding, not change."""


@dataclass(frozen=True)
class Reading:
    """One measurement; "could not measure" is never a number."""

    value: float | None
    state: Literal["ok", "no-data", "error"]


@dataclass(frozen=True)
class BackendInput:
    """What the decision knows about one backend this cycle."""

    name: str
    tasks: frozenset[str]
    max_complexity: int
    size_billions: float | None
    max_concurrency: int
    """Concurrent requests per endpoint."""
    ready_endpoints: int
    """0 = unreachable now."""
    newest_ready_since: float | None
    """Epoch seconds at which the newest ready endpoint became ready (for blackout); None = long ago."""
    signals: Mapping[str, Reading]
    """Keys from `Signal`. queueDepth and running are per endpoint (mean); cpu and memory are fractions of the
    limit (0..1+); kvCache and errorRate are fractions 0..1."""
    latency: Mapping[str, Reading]
    """Task-class name -> latency quantile in seconds."""
    model: str = ""
    """The model it serves (``ModelBackend.spec.model``): backends serving one model share a weight floor
    (rule 5). "" = a model of its own."""


@dataclass(frozen=True)
class ControllerState:
    """What `decide` carries from one cycle to the next; the operator stores it as JSON (`to_json`)."""

    weights: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """class -> backend -> share, as last decided."""
    loads: Mapping[str, float] = field(default_factory=dict)
    """backend -> smoothed load."""
    measured_at: Mapping[str, float] = field(default_factory=dict)
    """backend -> last time it had a counted reading."""
    offloading: Mapping[str, bool] = field(default_factory=dict)
    """class -> offload active (hysteresis memory); a missing class is inferred from its weights."""
    last_good_at: float | None = None
    """Last cycle with any counted reading."""
    stale: bool = False
    """The last decision had fallen back to static preferences (so StaticFallback is emitted once)."""
    overloaded: frozenset[str] = frozenset()
    """Backends reported overloaded and not yet recovered (event hysteresis)."""
    slowed: frozenset[str] = frozenset()
    """Backends slowed by something other than their requests, until they recover (rule 5b's hysteresis)."""
    class_loads: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """class -> backend -> smoothed load as that class sees it (`load.class_load`; rules 4 and 5)."""
    decided_at: float | None = None
    """When the last decision was made (scales maxStep and smoothing when a cycle comes early)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (camelCase keys, non-finite numbers left out)."""
        return {
            "weights": _nested_finite_map(self.weights),
            "loads": _finite_map(self.loads),
            "measuredAt": _finite_map(self.measured_at),
            "offloading": {c: bool(v) for c, v in self.offloading.items()},
            "lastGoodAt": _finite_or_none(self.last_good_at),
            "stale": self.stale,
            "overloaded": sorted(self.overloaded),
            "slowed": sorted(self.slowed),
            "classLoads": _nested_finite_map(self.class_loads),
            "decidedAt": _finite_or_none(self.decided_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ControllerState:
        """Parse `to_json` output; missing keys take defaults and malformed entries are dropped."""
        raw_offloading = data.get("offloading")
        offloading = (
            {str(c): v for c, v in raw_offloading.items() if isinstance(v, bool)}
            if isinstance(raw_offloading, Mapping)
            else {}
        )
        overloaded, slowed = _names(data.get("overloaded")), _names(data.get("slowed"))
        return cls(
            weights=_nested_finite_map(data.get("weights")),
            loads=_finite_map(data.get("loads")),
            measured_at=_finite_map(data.get("measuredAt")),
            offloading=offloading,
            last_good_at=_finite_or_none(data.get("lastGoodAt")),
            stale=data.get("stale") is True,
            overloaded=overloaded,
            slowed=slowed,
            class_loads=_nested_finite_map(data.get("classLoads")),
            decided_at=_finite_or_none(data.get("decidedAt")),
        )

    @classmethod
    def from_table_weights(cls, weights: Mapping[str, Mapping[str, float]], now: float) -> ControllerState:
        """State rebuilt from the live routing table after an operator restart.

        The table's weights become the previous weights and ``now`` counts as the last good measurement, so
        the next cycles move from where traffic is (no rewrite storm) and stale fallback waits a full
        staleAfter.
        """
        return cls(weights={str(c): _finite_map(w) for c, w in weights.items()}, last_good_at=now)


@dataclass(frozen=True)
class WeightEvent:
    """A notable transition, for a Kubernetes Event."""

    reason: str
    """CamelCase: OffloadStarted, OffloadStopped, BackendOverloaded, BackendRecovered, StaticFallback."""
    message: str
    task_class: str | None = None
    backend: str | None = None
    warning: bool = False


@dataclass(frozen=True)
class Decision:
    """The outcome of one control cycle."""

    weights: dict[str, dict[str, float]]
    """class -> backend -> share; each class sums to 1, or is {} when no candidate is reachable."""
    reasons: dict[str, dict[str, str]]
    """class -> backend -> why (every named backend, with a share or not)."""
    loads: dict[str, float | None]
    """backend -> smoothed load (None = unknown)."""
    backend_states: dict[str, BackendState]
    offloading: dict[str, bool]
    metrics_available: bool
    """False when this cycle had no counted reading at all."""
    stale: bool
    """True when the weights fell back to static preferences after the staleness limit."""
    events: list[WeightEvent]
    state: ControllerState
    """To pass in as ``previous`` next cycle."""


@dataclass(frozen=True)
class _Knobs:
    """Every threshold `decide` uses, read once from the policy."""

    interval: float
    smoothing: float
    max_step: float
    floor: float
    deadband: float
    stale_after: float
    blackout: float
    high: float
    low: float
    setpoint: float
    offload_max_complexity: int

    @classmethod
    def of(cls, policy: RoutingPolicySpec) -> _Knobs:
        a, o = policy.adaptation, policy.offload
        return cls(
            interval=a.interval_seconds,
            smoothing=a.smoothing,
            max_step=a.max_step,
            floor=a.weight_floor,
            deadband=max(a.hysteresis, _RESOLUTION_BAND),
            stale_after=a.stale_after_seconds,
            blackout=a.blackout_seconds,
            high=o.high_watermark,
            low=o.low_watermark,
            setpoint=(o.low_watermark + o.high_watermark) / 2.0,
            offload_max_complexity=o.max_complexity,
        )


def _index(backends: Iterable[BackendInput]) -> dict[str, BackendInput]:
    by_name: dict[str, BackendInput] = {}
    for b in backends:
        by_name.setdefault(b.name, b)
    return by_name


def _elapsed_fraction(decided_at: float | None, now: float, interval: float) -> float:
    """The fraction of a control interval since the last decision (1 if unknown, never more than 1)."""
    if decided_at is None or not math.isfinite(decided_at):
        return 1.0
    return min(1.0, max(0.0, (now - decided_at) / interval))


def _finite_or_none(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _names(data: Any) -> frozenset[str]:
    return frozenset(n for n in data if isinstance(n, str)) if isinstance(data, list) else frozenset()


def _finite_map(data: Any) -> dict[str, float]:
    if not isinstance(data, Mapping):
        return {}
    return {str(k): float(v) for k, v in data.items() if _finite_or_none(v) is not None}


def _nested_finite_map(data: Any) -> dict[str, dict[str, float]]:
    if not isinstance(data, Mapping):
        return {}
    return {str(k): _finite_map(v) for k, v in data.items() if isinstance(v, Mapping)}

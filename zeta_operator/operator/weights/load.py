"""Rules 2-4: which readings count, a backend's load (worst signal against its threshold), smoothing, states."""

from __future__ import annotations

import math
from collections.abc import Mapping

from ...api.common import BackendState
from ...api.policy import RoutingPolicySpec
from .model import BackendInput, ControllerState, Reading, _Knobs


def backend_load(backend: BackendInput, policy: RoutingPolicySpec) -> float | None:
    """Worst normalised signal (1.0 = at its threshold), or None when no reading counts (rules 2 and 3)."""
    ratios = [
        r for r in (demand_load(backend, policy), *_latency_ratios(backend, policy).values()) if r is not None
    ]
    return max(ratios) if ratios else None


def demand_load(backend: BackendInput, policy: RoutingPolicySpec) -> float | None:
    """The worst of the engine's own signals (what the requests it holds use: cpu, memory, queue, KV cache,
    running, errors), without latency; None when none counts. A backend whose latency is high while this is
    low is slowed by something other than its requests (rule 5b)."""
    t = policy.thresholds
    limits: dict[str, float] = {
        "cpu": t.cpu,
        "memory": t.memory,
        "queueDepth": t.queue_depth,
        "kvCache": t.kv_cache,
        "errorRate": t.error_rate,
        "running": float(backend.max_concurrency),
    }
    ratios: list[float] = []
    for signal, limit in limits.items():
        reading = backend.signals.get(signal)
        value = _counted(reading) if reading is not None else None
        if value is not None:
            ratios.append(_ratio(value, limit))
    return max(ratios) if ratios else None


def class_load(backend: BackendInput, policy: RoutingPolicySpec, task_class: str) -> float | None:
    """The load as one class sees it: the engine's signals and that class's latency only (another class's
    slow answers say nothing about how fast this one is served); None when none counts."""
    latency = _latency_ratios(backend, policy).get(task_class)
    ratios = [r for r in (demand_load(backend, policy), latency) if r is not None]
    return max(ratios) if ratios else None


def _latency_ratios(backend: BackendInput, policy: RoutingPolicySpec) -> dict[str, float]:
    """Class -> its latency against ``latencyObjective * thresholds.latency``, for the counted readings."""
    out: dict[str, float] = {}
    for task_class in policy.classes:
        reading = backend.latency.get(task_class.name)
        value = _counted(reading) if reading is not None else None
        if value is not None:
            out[task_class.name] = _ratio(
                value, task_class.latency_objective_seconds * policy.thresholds.latency
            )
    return out


def _counted(reading: Reading) -> float | None:
    if reading.state != "ok" or reading.value is None:
        return None
    try:
        value = float(reading.value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _ratio(value: float, limit: float) -> float:
    if limit <= 0:
        # A zero threshold (schema allows it for fractions) means "any use is full load".
        return 0.0 if value == 0 else 1e6
    return min(value / limit, 1e6)


def _smooth(
    raw: Mapping[str, float | None], prev: ControllerState, knobs: _Knobs, now: float, elapsed: float
) -> tuple[dict[str, float | None], dict[str, float]]:
    alpha = _alpha(knobs, elapsed)
    loads: dict[str, float | None] = {}
    measured_at: dict[str, float] = {}
    for name, load in raw.items():
        held = prev.loads.get(name)
        seen = prev.measured_at.get(name)
        if held is None or seen is None or not math.isfinite(held) or now - seen > knobs.stale_after:
            held, seen = None, None
        if load is not None:
            loads[name] = load if held is None else alpha * load + (1.0 - alpha) * held
            measured_at[name] = now
        else:
            loads[name] = held
            if seen is not None:
                measured_at[name] = seen
    return loads, measured_at


def _smooth_class_loads(
    raw: Mapping[str, Mapping[str, float | None]],
    prev: ControllerState,
    knobs: _Knobs,
    now: float,
    elapsed: float,
) -> dict[str, dict[str, float]]:
    """Class -> backend -> the class's view (`class_load`) smoothed like the backend's load (rule 4), while it
    keeps being measured: a view with no counted reading this cycle is left out (the backend's own smoothed
    load stands in for it), and one whose backend went stale starts afresh."""
    alpha = _alpha(knobs, elapsed)
    out: dict[str, dict[str, float]] = {}
    for task_class, views in raw.items():
        held = prev.class_loads.get(task_class, {})
        smoothed = {}
        for name, view in views.items():
            if view is None:
                continue
            before, seen = held.get(name), prev.measured_at.get(name)
            if before is None or seen is None or now - seen > knobs.stale_after:
                smoothed[name] = view
            else:
                smoothed[name] = alpha * view + (1.0 - alpha) * before
        out[task_class] = smoothed
    return out


def _alpha(knobs: _Knobs, elapsed: float) -> float:
    """Per-interval smoothing, applied for the fraction of an interval that passed."""
    return 1.0 - (1.0 - knobs.smoothing) ** elapsed if elapsed < 1.0 else knobs.smoothing


def _state(backend: BackendInput, load: float | None, knobs: _Knobs) -> BackendState:
    if backend.ready_endpoints <= 0:
        return "Unavailable"
    if load is None:
        return "Unknown"
    if load >= knobs.high:
        return "Overloaded"
    if load >= knobs.low:
        return "Saturated"
    return "Healthy"

"""The operator's one decision: per task class, the share of traffic each backend gets this control interval.

`decide` is pure: no I/O, no clock (``now`` is an argument), no randomness, no logging. Everything it
remembers between cycles is in `ControllerState`, which the operator stores as JSON and hands back next
cycle. Every threshold comes from the `RoutingPolicySpec`; the tuning constants below (`MIN_MULTIPLIER`,
`MIN_CORRECTION` and `SMALL_GAIN`) bound the controller, they are not thresholds.

Rules, in the order `decide` applies them:

1. **Candidates.** A class's candidates are its ``preferred`` then ``fallbacks`` backends (policy order, first
   mention wins) that exist in ``backends``, are `capable` of the class (task type served and
   ``max_complexity >= class complexity.max``) and have ``ready_endpoints > 0``. Capability is a filter: an
   incapable backend never appears in a class's weights, whatever its load. A *complex* class
   (``complexity.max > offload.maxComplexity``) is never downgraded: a fallback is a candidate only if its
   ``size_billions`` is known and at least the largest preferred backend's (if a preferred size is unknown, no
   fallback qualifies; if no capable preferred backend exists at all, capability alone decides). Named
   backends that are not candidates get a reason ("not capable: ...", "unavailable: ...") and no weight.
2. **Readings.** A reading counts only if its state is ``ok`` and its value is a finite number >= 0; NaN, Inf,
   negative or missing values are treated as errors ("could not measure" is never a number).
3. **Load** (`backend_load`): the worst (max) of value/threshold over the counted signals: cpu, memory,
   queueDepth (per endpoint), kvCache, errorRate (errors count as load, so a fast-failing backend does not
   attract traffic) against ``thresholds``; running (per endpoint) against ``capacity.maxConcurrency`` (a
   router that caps in-flight requests keeps the engine queue empty, so running is what shows saturation); and
   each class's latency against ``latencyObjective * thresholds.latency``. 1.0 means "at the limit". None when
   nothing was counted.
4. **Smoothing.** The load is an EWMA: ``smoothed = a * load + (1 - a) * previous`` with ``a = smoothing``
   per ``interval`` (1 = no smoothing). A backend with no counted reading keeps its previous smoothed load
   (held); a held load older than ``staleAfter`` is forgotten (None, state Unknown).
5. **Target shares: integral control.** Every candidate gets the floor ``f = min(weightFloor, 1/candidates)``;
   the remaining ``1 - f * candidates`` goes to the *carriers*. The controller's state is the previous weights
   themselves (so a restart from the routing table resumes it exactly). Its dead zone is the offload band: a
   load inside ``[lowWatermark, highWatermark]``, or within `MIN_CORRECTION` of its aim, causes no
   correction. A load outside is corrected towards an *aim*: the setpoint ``S = (lowWatermark +
   highWatermark) / 2``, or the mean load of the backends concerned when that is higher (a busy group is
   evened out, not pushed around one backend at a time):

   - each carrier has a multiplier ``m``: its previous share above the floor relative to its base (ready
     endpoints for preferred backends, slots ``ready_endpoints * max_concurrency`` for fallbacks), scaled so
     the largest is 1 (1 for a carrier new to the class). This cycle ``m`` is multiplied by ``aim / load``
     (outside the band only; by 2 for an unknown load, which drifts back to static because "could not
     measure" is not "measured bad"), capped at 1, rescaled so the largest is 1 and kept at or above
     `MIN_MULTIPLIER`; the carriers share by ``base * m``. So a backend above the band sheds traffic, and
     below the band the multipliers grow back to 1, which is the static split;
   - the correction is proportionate to how far the load is outside the band: the full ``aim / load`` only
     at a distance of at least the band's width ``highWatermark - lowWatermark``; nearer the band it is
     ``(aim / load) ** max(SMALL_GAIN, distance / width)``, but never smaller than `MIN_CORRECTION` (so a
     constant load still reaches its bound as fast as before). The same holds below the band, for regrowth.
     Why: near the band's edge the smoothed load at the static split is about as noisy as the band is wide,
     and the measurement lags the weights by several intervals; a full correction to every chance crossing,
     repeated while the lagging measurement still shows it, ratchets the share down (0.96 -> 0.47) until it
     snaps back and offloading restarts (a limit cycle:
     `test_in_a_noisy_lagging_closed_loop_steady_demand_keeps_the_weights_steady`, DES steady-60/90). A
     burst far above the band is still shed at once;
   - normally the preferred backends carry and fallbacks keep the floor; if no preferred backend is reachable
     the fallbacks carry ("fallback: preferred unavailable");
   - while the class is *offloading*, the preferred group's share ``g`` (from the previous weights) is
     multiplied by the pool load's correction, between the preferred floors and its static share, and the rest
     goes to the fallbacks. It never sheds towards fallbacks that are on average as loaded as the preferred
     backends or above the high watermark (that would only move the queue). That is the preference bias: the
     preferred backends keep their load in the band and only the excess spills over.

   Why integral control: when load follows the weights, a target computed from loads alone (say, shares in
   proportion to headroom) has a loop gain above 1 near saturation. The weights then flip between two values
   every interval, and offloading drains the preferred backends below the low watermark, stops, refills them
   above the high watermark and starts again. A multiplicative correction lands a load proportional to its
   share at the aim in one step, and with smoothing it settles with damped overshoot
   (`test_in_a_closed_loop_the_weights_settle_instead_of_flapping` drives a fleet whose load follows the
   weights).
6. **Offload hysteresis**, per class that has at least one usable fallback: the pool load of its reachable
   preferred backends (mean weighted by slots, backends in blackout left out) starts offloading when it
   exceeds ``offload.highWatermark``. It stops only when the pool load is below ``offload.lowWatermark`` *and*
   rule 5 has given the preferred backends their static share back (up to rounding), so ending an offload
   never throws traffic back in one go. In between, and while the pool load is unknown, the previous state
   holds. Simple classes may spill to any capable fallback, including smaller models; complex classes only to
   the larger ones rule 1 admits.
7. **Blackout.** A backend whose newest endpoint became ready less than ``blackout`` ago may not gain share:
   a backend that had no share in the class (new, or back from zero endpoints) gets only the floor, one that
   was already serving keeps at most its previous share (so scaling up a busy backend never pushes its traffic
   away). The excess goes to the other carriers. If every candidate is in blackout, blackout does not apply.
8. **Damping.** Starting from the previous weights (static preferences on the first cycle or for a new class):
   a candidate that disappeared (no endpoints, no longer capable, removed) gives its share to the others at
   once, towards the target, and a new candidate enters at the floor (no max-step delay for either). If every
   weight is within ``hysteresis`` of its target, nothing moves, except while rule 5 corrects a load outside
   the band: a deadband would stall an integral controller (a shed share whose growth per interval is below
   the deadband would never grow back), and the band is its dead zone. Otherwise every weight moves towards
   its target by at most ``maxStep`` (scaled by the elapsed fraction of ``interval`` when called early); the
   clipped moves are balanced by shrinking the larger of the total increase and the total decrease, so the
   class still sums to 1 without any weight moving further than ``maxStep`` or past its target (and never
   below the floor, since base and target are both above it).
9. **Rounding.** Weights are multiples of 0.0001 that sum to exactly 10000 units: largest remainder, ties by
   backend name, then every candidate raised to the floor (rounded up to the grid) by taking units from the
   largest share (ties by name). Rounding moves a weight by less than 0.0001.
10. **Missing data.** A cycle with no counted reading for any backend holds the previous weights exactly
    (reasons "held: metrics unavailable", ``metrics_available=False``); only the candidate set still applies
    (a backend that lost its endpoints drops out at once, a new one enters at the floor). When ``now -
    last_good_at > staleAfter`` the target becomes the static preferences (``stale=True``, reasons "static:
    stale ...", one ``StaticFallback`` event, offloading cleared without further events), reached at
    ``maxStep`` per interval. With no measurement ever, the static preferences are used too (not stale:
    nothing went bad). NaN/Inf never reach a weight, and a class is empty only when none of its named backends
    is a capable, reachable candidate.
11. **States and events.** A backend is Unavailable with no ready endpoints, Unknown without a (smoothed)
    load, Overloaded at ``load >= highWatermark``, Saturated at ``load >= lowWatermark`` (no room left for
    spill-over), else Healthy. Events: ``OffloadStarted``/``OffloadStopped`` on a class's transitions;
    ``BackendOverloaded`` when a load reaches the high watermark and ``BackendRecovered`` only once it is back
    below the low watermark (the same hysteresis, so a load hovering at the threshold is one event, not a
    stream); ``StaticFallback`` once when the staleness limit is crossed.
12. **Determinism.** Same inputs, same `Decision`: everything iterates in policy order or by backend name.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..api.common import BackendState, parse_duration
from ..api.policy import RoutingPolicySpec, TaskClass

Signal = Literal["cpu", "memory", "queueDepth", "kvCache", "errorRate", "running"]

MIN_MULTIPLIER = 0.05
"""A carrier's share above the floor never drops below this fraction of its static one, so it can recover."""

MIN_CORRECTION = 0.1
"""Corrections by a factor within this of 1 are not made: the load is close enough to its aim, and against
loads that do not follow the weights a smaller correction would creep on for hundreds of intervals."""

SMALL_GAIN = 0.25
"""The least fraction (in log terms) of the full correction made for a load that has just left the band by
less than the band's width: a noisy smoothed load crosses the band edges by chance, and with a measurement
that lags the weights by several intervals full corrections to such crossings wind up into a limit cycle."""

_UNMEASURED = 2.0
"""The multiplier of a carrier whose load is unknown grows by this factor per interval (back to static)."""

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
    decided_at: float | None = None
    """When the last decision was made (scales maxStep and smoothing when a cycle comes early)."""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (camelCase keys, non-finite numbers left out)."""
        return {
            "weights": {c: _finite_map(w) for c, w in self.weights.items()},
            "loads": _finite_map(self.loads),
            "measuredAt": _finite_map(self.measured_at),
            "offloading": {c: bool(v) for c, v in self.offloading.items()},
            "lastGoodAt": _finite_or_none(self.last_good_at),
            "stale": self.stale,
            "overloaded": sorted(self.overloaded),
            "decidedAt": _finite_or_none(self.decided_at),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ControllerState:
        """Parse `to_json` output; missing keys take defaults and malformed entries are dropped."""
        raw_weights = data.get("weights")
        weights = (
            {str(c): _finite_map(w) for c, w in raw_weights.items() if isinstance(w, Mapping)}
            if isinstance(raw_weights, Mapping)
            else {}
        )
        raw_offloading = data.get("offloading")
        offloading = (
            {str(c): v for c, v in raw_offloading.items() if isinstance(v, bool)}
            if isinstance(raw_offloading, Mapping)
            else {}
        )
        raw_overloaded = data.get("overloaded")
        overloaded = (
            frozenset(str(n) for n in raw_overloaded if isinstance(n, str))
            if isinstance(raw_overloaded, list)
            else frozenset()
        )
        return cls(
            weights=weights,
            loads=_finite_map(data.get("loads")),
            measured_at=_finite_map(data.get("measuredAt")),
            offloading=offloading,
            last_good_at=_finite_or_none(data.get("lastGoodAt")),
            stale=data.get("stale") is True,
            overloaded=overloaded,
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


# --- public helpers -----------------------------------------------------------------------------------------


def capable(backend: BackendInput, task_class: TaskClass) -> bool:
    """The backend serves the class's task type up to the class's highest complexity (a filter, no weight)."""
    return task_class.task_type in backend.tasks and backend.max_complexity >= task_class.complexity.max


def backend_load(backend: BackendInput, policy: RoutingPolicySpec) -> float | None:
    """Worst normalised signal (1.0 = at its threshold), or None when no reading counts (rules 2 and 3)."""
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
    for task_class in policy.classes:
        reading = backend.latency.get(task_class.name)
        value = _counted(reading) if reading is not None else None
        if value is not None:
            ratios.append(_ratio(value, parse_duration(task_class.latency_objective) * t.latency))
    return max(ratios) if ratios else None


def static_weights(
    policy: RoutingPolicySpec, backends: Sequence[BackendInput]
) -> dict[str, dict[str, float]]:
    """The policy's static preferences (rule 5 with no load): preferred backends share the class by ready
    endpoints, each fallback keeps the floor; if no preferred backend is reachable, the fallbacks share it by
    slots (``ready_endpoints * max_concurrency``)."""
    knobs = _Knobs.of(policy)
    by_name = _index(backends)
    out: dict[str, dict[str, float]] = {}
    for task_class in policy.classes:
        roster = _roster(task_class, by_name, knobs)
        floor = _floor_for(knobs.floor, roster.candidates)
        out[task_class.name] = _rounded(_static_target(roster, by_name, floor), floor)
    return out


# --- the decision -------------------------------------------------------------------------------------------


def decide(
    *,
    policy: RoutingPolicySpec,
    backends: Sequence[BackendInput],
    previous: ControllerState | None,
    now: float,
) -> Decision:
    """Weights for every class of ``policy`` this cycle, following the module's rules."""
    knobs = _Knobs.of(policy)
    by_name = _index(backends)
    prev = previous if previous is not None else ControllerState()
    elapsed = _elapsed_fraction(prev.decided_at, now, knobs.interval)

    raw = {name: backend_load(b, policy) for name, b in by_name.items()}
    metrics_available = any(v is not None for v in raw.values())
    loads, measured_at = _smooth(raw, prev, knobs, now, elapsed)
    last_good_at = now if metrics_available else prev.last_good_at

    if metrics_available:
        mode: _Mode = "adapt"
    elif last_good_at is None:
        mode = "start"
    elif now - last_good_at > knobs.stale_after:
        mode = "stale"
    else:
        mode = "hold"

    events: list[WeightEvent] = []
    if mode == "stale" and not prev.stale:
        assert last_good_at is not None
        events.append(
            WeightEvent(
                reason="StaticFallback",
                message=f"no usable measurement for {now - last_good_at:.0f}s (> staleAfter "
                f"{knobs.stale_after:g}s): weights return to the static preferences",
                warning=True,
            )
        )

    states: dict[str, BackendState] = {name: _state(b, loads.get(name), knobs) for name, b in by_name.items()}
    overloaded = set(prev.overloaded) & set(by_name)
    for name in sorted(by_name):
        load = loads.get(name)
        if load is None:
            continue
        if name not in overloaded and load >= knobs.high:
            overloaded.add(name)
            events.append(
                WeightEvent(
                    reason="BackendOverloaded",
                    message=f"{name} load {load:.2f} >= high watermark {knobs.high:.2f}",
                    backend=name,
                    warning=True,
                )
            )
        elif name in overloaded and load < knobs.low:
            overloaded.discard(name)
            events.append(
                WeightEvent(
                    reason="BackendRecovered",
                    message=f"{name} load {load:.2f} < low watermark {knobs.low:.2f}",
                    backend=name,
                )
            )

    blackout = {
        name
        for name, b in by_name.items()
        if b.newest_ready_since is not None and now - b.newest_ready_since < knobs.blackout
    }
    weights: dict[str, dict[str, float]] = {}
    reasons: dict[str, dict[str, str]] = {}
    offloading: dict[str, bool] = {}
    for task_class in policy.classes:
        outcome = _decide_class(
            task_class,
            by_name=by_name,
            loads=loads,
            blackout=blackout,
            prev=prev,
            knobs=knobs,
            mode=mode,
            step=knobs.max_step * elapsed,
            stale_age=None if last_good_at is None else now - last_good_at,
        )
        weights[task_class.name] = outcome.weights
        reasons[task_class.name] = outcome.reasons
        offloading[task_class.name] = outcome.offloading
        events.extend(outcome.events)

    state = ControllerState(
        weights={c: dict(w) for c, w in weights.items()},
        loads={n: v for n, v in loads.items() if v is not None},
        measured_at=measured_at,
        offloading=dict(offloading),
        last_good_at=last_good_at,
        stale=mode == "stale",
        overloaded=frozenset(overloaded),
        decided_at=now,
    )
    return Decision(
        weights=weights,
        reasons=reasons,
        loads={name: loads.get(name) for name in sorted(by_name)},
        backend_states={name: states[name] for name in sorted(by_name)},
        offloading=offloading,
        metrics_available=metrics_available,
        stale=mode == "stale",
        events=events,
        state=state,
    )


# --- private layers -----------------------------------------------------------------------------------------

_Mode = Literal["adapt", "hold", "stale", "start"]


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
            interval=parse_duration(a.interval),
            smoothing=a.smoothing,
            max_step=a.max_step,
            floor=a.weight_floor,
            deadband=max(a.hysteresis, _RESOLUTION_BAND),
            stale_after=parse_duration(a.stale_after),
            blackout=parse_duration(a.blackout),
            high=o.high_watermark,
            low=o.low_watermark,
            setpoint=(o.low_watermark + o.high_watermark) / 2.0,
            offload_max_complexity=o.max_complexity,
        )


@dataclass(frozen=True)
class _Roster:
    """Who may carry one class's traffic this cycle."""

    preferred: list[str]
    """Reachable, capable preferred backends, policy order."""
    fallbacks: list[str]
    """Reachable, capable, size-admitted fallbacks, policy order."""
    has_fallback: bool
    """The class has a usable fallback at all (reachable or not): offloading means something."""
    excluded: dict[str, str]
    """Named backends that are not candidates -> why."""

    @property
    def candidates(self) -> list[str]:
        return [*self.preferred, *self.fallbacks]


@dataclass(frozen=True)
class _ClassOutcome:
    weights: dict[str, float]
    reasons: dict[str, str]
    offloading: bool
    events: list[WeightEvent]


def _decide_class(
    task_class: TaskClass,
    *,
    by_name: Mapping[str, BackendInput],
    loads: Mapping[str, float | None],
    blackout: set[str],
    prev: ControllerState,
    knobs: _Knobs,
    mode: _Mode,
    step: float,
    stale_age: float | None,
) -> _ClassOutcome:
    roster = _roster(task_class, by_name, knobs)
    candidates = roster.candidates
    name = task_class.name
    previous = _usable_weights(prev.weights.get(name))
    was_offloading = _was_offloading(name, roster, prev, previous, knobs.floor)
    events: list[WeightEvent] = []

    if not candidates:
        return _ClassOutcome({}, dict(roster.excluded), False, events)
    floor = _floor_for(knobs.floor, candidates)
    # Blackout only matters while someone else can carry the traffic.
    in_blackout = {n for n in candidates if n in blackout}
    if in_blackout == set(candidates):
        in_blackout = set()

    reasons: dict[str, str]
    if mode == "hold":
        offloading = was_offloading
        if set(previous) == set(candidates) and abs(sum(previous.values()) - 1.0) < 1e-6:
            weights = {n: previous[n] for n in candidates}
        elif previous:
            weights = _rounded(_rebase(previous, candidates, floor, toward=None), floor)
        else:
            weights = _rounded(
                _capped(_static_target(roster, by_name, floor), in_blackout, previous, floor), floor
            )
        reasons = {n: "held: metrics unavailable" for n in candidates}
    elif mode in ("stale", "start"):
        offloading = False
        target = _capped(_static_target(roster, by_name, floor), in_blackout, previous, floor)
        base = _rebase(previous, candidates, floor, toward=target) if previous else target
        weights = _rounded(_step(base, target, step, knobs.deadband), floor)
        why = (
            f"static: stale {stale_age:.0f}s > {knobs.stale_after:g}s"
            if mode == "stale" and stale_age is not None
            else "static: no measurements yet"
        )
        reasons = {n: why for n in candidates}
    else:
        pool = _pool_load(roster.preferred, in_blackout, by_name, loads)
        offloading = was_offloading
        pool_names = "+".join(n for n in roster.preferred if n not in in_blackout) or "preferred"
        if not roster.has_fallback:
            offloading = False
        elif pool is not None and not was_offloading and pool > knobs.high:
            offloading = True
            spill = ", ".join(roster.fallbacks) or "no reachable fallback"
            events.append(
                WeightEvent(
                    reason="OffloadStarted",
                    message=f"{name}: {pool_names} load {pool:.2f} > high watermark {knobs.high:.2f}; "
                    f"spilling over to {spill}",
                    task_class=name,
                )
            )
        elif (
            pool is not None
            and was_offloading
            and pool < knobs.low
            and _returned(roster, previous, floor, knobs)
        ):
            offloading = False
            events.append(
                WeightEvent(
                    reason="OffloadStopped",
                    message=f"{name}: {pool_names} load {pool:.2f} < low watermark {knobs.low:.2f}; "
                    "back to preferred",
                    task_class=name,
                )
            )
        adaptive, acting = _adaptive_target(
            roster,
            by_name,
            loads,
            offloading=offloading,
            pool=pool,
            previous=previous,
            floor=floor,
            knobs=knobs,
        )
        target = _capped(adaptive, in_blackout, previous, floor)
        # An acting controller must not stall in the weight deadband: its own dead zone is the load band.
        deadband = _RESOLUTION_BAND if acting else knobs.deadband
        if previous:
            base = _rebase(previous, candidates, floor, toward=target)
        else:
            base = _capped(_static_target(roster, by_name, floor), in_blackout, previous, floor)
        weights = _rounded(_step(base, target, step, deadband), floor)
        reasons = _adaptive_reasons(roster, offloading, pool, pool_names, knobs)

    if mode != "hold":
        for n in in_blackout:
            reasons[n] = "blackout"
    reasons.update(roster.excluded)
    return _ClassOutcome(weights, reasons, offloading, events)


def _adaptive_reasons(
    roster: _Roster, offloading: bool, pool: float | None, pool_names: str, knobs: _Knobs
) -> dict[str, str]:
    reasons: dict[str, str] = {}
    for n in roster.preferred:
        reasons[n] = "preferred (offloading)" if offloading and roster.fallbacks else "preferred"
    for n in roster.fallbacks:
        if not roster.preferred:
            reasons[n] = "fallback: preferred unavailable"
        elif not offloading:
            reasons[n] = "floor"
        elif pool is None:
            reasons[n] = f"offload: {pool_names} load unknown, offload held"
        elif pool > knobs.high:
            reasons[n] = f"offload: {pool_names} load {pool:.2f} > high watermark {knobs.high:.2f}"
        elif pool >= knobs.low:
            reasons[n] = f"offload: {pool_names} load {pool:.2f} >= low watermark {knobs.low:.2f}"
        else:
            reasons[n] = f"offload ending: {pool_names} load {pool:.2f} < low watermark {knobs.low:.2f}"
    return reasons


# Rule 1: candidates.


def _roster(task_class: TaskClass, by_name: Mapping[str, BackendInput], knobs: _Knobs) -> _Roster:
    preferred: list[str] = []
    fallbacks: list[str] = []
    excluded: dict[str, str] = {}
    has_fallback = False
    complex_class = task_class.complexity.max > knobs.offload_max_complexity
    size_floor = _size_floor(task_class, by_name) if complex_class else None
    seen: set[str] = set()
    named = [(n, True) for n in task_class.preferred] + [(n, False) for n in task_class.fallbacks or []]
    for name, is_preferred in named:
        if name in seen:
            continue
        seen.add(name)
        backend = by_name.get(name)
        if backend is None:
            excluded[name] = "not found: not selected by the policy, or does not exist"
            continue
        if not capable(backend, task_class):
            excluded[name] = "not capable: " + _incapability(backend, task_class)
            continue
        if not is_preferred and complex_class:
            refusal = _downgrade_refusal(backend, size_floor)
            if refusal:
                excluded[name] = refusal
                continue
        if not is_preferred:
            has_fallback = True
        if backend.ready_endpoints <= 0:
            excluded[name] = "unavailable: no ready endpoints"
            continue
        (preferred if is_preferred else fallbacks).append(name)
    return _Roster(preferred, fallbacks, has_fallback, excluded)


_NO_SIZE_RULE = -1.0


def _size_floor(task_class: TaskClass, by_name: Mapping[str, BackendInput]) -> float | None:
    """Smallest fallback size a complex class may use: the largest capable preferred backend's size.

    None when a preferred size is unknown (nothing can be shown to be at least as large); `_NO_SIZE_RULE`
    when no capable preferred backend exists to compare with.
    """
    sizes = [
        by_name[n].size_billions
        for n in task_class.preferred
        if n in by_name and capable(by_name[n], task_class)
    ]
    if not sizes:
        return _NO_SIZE_RULE
    known = [s for s in sizes if s is not None]
    return max(known) if len(known) == len(sizes) else None


def _downgrade_refusal(backend: BackendInput, size_floor: float | None) -> str | None:
    if size_floor == _NO_SIZE_RULE:
        return None
    if size_floor is None:
        return "excluded: complex class and a preferred backend's size is unknown"
    if backend.size_billions is None:
        return "excluded: complex class and this backend's size is unknown"
    if backend.size_billions < size_floor:
        return f"excluded: complex class, {backend.size_billions:g}B < preferred {size_floor:g}B"
    return None


def _incapability(backend: BackendInput, task_class: TaskClass) -> str:
    why = []
    if task_class.task_type not in backend.tasks:
        why.append(f"task type {task_class.task_type} not served")
    if backend.max_complexity < task_class.complexity.max:
        why.append(f"complexity ceiling {backend.max_complexity} < class max {task_class.complexity.max}")
    return ", ".join(why)


# Rules 2-4: readings and loads.


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
    # Per-interval smoothing, applied for the fraction of an interval that passed.
    alpha = 1.0 - (1.0 - knobs.smoothing) ** elapsed if elapsed < 1.0 else knobs.smoothing
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


# Rules 5-7: targets.


def _static_target(roster: _Roster, by_name: Mapping[str, BackendInput], floor: float) -> dict[str, float]:
    if roster.preferred:
        mass = {n: float(by_name[n].ready_endpoints) for n in roster.preferred}
    else:
        mass = {n: float(by_name[n].ready_endpoints * by_name[n].max_concurrency) for n in roster.fallbacks}
    return _floor_plus(roster.candidates, mass, floor)


def _adaptive_target(
    roster: _Roster,
    by_name: Mapping[str, BackendInput],
    loads: Mapping[str, float | None],
    *,
    offloading: bool,
    pool: float | None,
    previous: Mapping[str, float],
    floor: float,
    knobs: _Knobs,
) -> tuple[dict[str, float], bool]:
    """Rule 5: integral control of the shares, with the previous weights as the controller's state.

    Also says whether the controller acted (some load outside the band), which exempts the move from the
    weight deadband (rule 8).
    """
    endpoints = {n: float(by_name[n].ready_endpoints) for n in roster.candidates}
    slots = {n: float(by_name[n].ready_endpoints * by_name[n].max_concurrency) for n in roster.candidates}
    acting = False

    def group(names: Sequence[str], base: Mapping[str, float]) -> dict[str, float]:
        nonlocal acting
        aim = max(knobs.setpoint, _pool_load(names, set(), by_name, loads) or 0.0)
        # An unmeasured carrier drifts back to its static share: "could not measure" is not "measured bad".
        factors = {
            n: _UNMEASURED if loads.get(n) is None else _factor(loads.get(n), knobs, aim) for n in names
        }
        acting = acting or any(f != 1.0 for f in factors.values())
        m = _multipliers(names, base, factors, previous, floor)
        return {n: base[n] * m[n] for n in names}

    if not roster.preferred:
        return _floor_plus(roster.candidates, group(roster.fallbacks, slots), floor), acting
    if not (offloading and roster.fallbacks):
        return _floor_plus(roster.candidates, group(roster.preferred, endpoints), floor), acting
    lowest, highest = floor * len(roster.preferred), 1.0 - floor * len(roster.fallbacks)
    # A share of 0 could never grow back: the integral state has the same lower bound as a multiplier.
    share = max(_preferred_share(roster, previous, default=highest), MIN_MULTIPLIER * highest)
    everyone = _pool_load(roster.candidates, set(), by_name, loads, assumed=knobs.low) or 0.0
    factor = _factor(pool, knobs, max(knobs.setpoint, everyone))
    if factor < 1.0:
        room = _pool_load(roster.fallbacks, set(), by_name, loads, assumed=knobs.low)
        if room is not None and pool is not None and room >= min(pool, knobs.high):
            factor = 1.0  # the fallbacks are as busy: spilling more would only move the queue
    acting = factor != 1.0
    share = min(highest, max(lowest, share * factor))
    mass = {
        **_scaled(group(roster.preferred, endpoints), share - lowest),
        **_scaled(group(roster.fallbacks, slots), 1.0 - share - floor * len(roster.fallbacks)),
    }
    return _floor_plus(roster.candidates, mass, floor), acting


def _factor(load: float | None, knobs: _Knobs, aim: float) -> float:
    """The controller's correction for one load: none inside the band, else towards ``aim``: the setpoint, or
    the mean load of everyone concerned when higher (so a busy group is evened out, not pushed around).

    The correction is proportionate: the full one, ``aim / load``, only for a load outside the band by at
    least the band's width; closer to the band, ``(aim / load) ** gain`` with ``gain = max(SMALL_GAIN,
    distance / width)``, but never less than `MIN_CORRECTION` (a correction whose full size is below that is
    not made at all).
    """
    if load is None or knobs.low <= load <= knobs.high:
        return 1.0
    factor = aim / max(load, _EPS)
    if abs(factor - 1.0) < MIN_CORRECTION:
        return 1.0
    width = knobs.high - knobs.low
    distance = load - knobs.high if load > knobs.high else knobs.low - load
    if width <= 0 or distance >= width:
        return factor
    damped = float(factor ** max(SMALL_GAIN, distance / width))
    return min(damped, 1.0 - MIN_CORRECTION) if factor < 1.0 else max(damped, 1.0 + MIN_CORRECTION)


def _preferred_share(roster: _Roster, previous: Mapping[str, float], *, default: float) -> float:
    """The preferred backends' part of the previous weights, among this cycle's candidates."""
    kept = {n: previous[n] for n in roster.candidates if n in previous}
    total = sum(kept.values())
    if total <= 0 or not any(n in kept for n in roster.preferred):
        return default
    return sum(kept.get(n, 0.0) for n in roster.preferred) / total


def _returned(roster: _Roster, previous: Mapping[str, float], floor: float, knobs: _Knobs) -> bool:
    """The preferred backends have their static share back: offload can end without a jump."""
    if not roster.fallbacks:
        return True
    static = 1.0 - floor * len(roster.fallbacks)
    # Every rounded weight may be off by one unit.
    return (
        _preferred_share(roster, previous, default=static) >= static - (len(roster.candidates) + 1) / _UNITS
    )


def _multipliers(
    names: Sequence[str],
    base: Mapping[str, float],
    factors: Mapping[str, float],
    previous: Mapping[str, float],
    floor: float,
) -> dict[str, float]:
    """Each carrier's share above the floor relative to its base (the largest = 1; 1 for a carrier new to the
    class), times its factor, capped at 1, rescaled so the largest is 1, never below MIN_MULTIPLIER."""
    previous_m = {}
    for n in names:
        if n in previous:
            previous_m[n] = max(0.0, previous[n] - floor) / base[n] if base[n] > 0 else 0.0
    top = max(previous_m.values(), default=0.0)
    out = {}
    for n in names:
        m = max(MIN_MULTIPLIER, previous_m[n] / top) if n in previous_m and top > 0 else 1.0
        out[n] = min(1.0, m * factors[n])
    top = max(out.values(), default=1.0)
    return {n: max(MIN_MULTIPLIER, m / top) for n, m in out.items()}


def _scaled(mass: Mapping[str, float], total: float) -> dict[str, float]:
    s = sum(mass.values())
    return {n: total * m / s for n, m in mass.items()} if s > 0 else {n: total / len(mass) for n in mass}


def _floor_plus(candidates: Sequence[str], mass: Mapping[str, float], floor: float) -> dict[str, float]:
    """Everyone gets the floor; the rest goes to the carriers (the keys of ``mass``) in proportion to it."""
    rest = max(0.0, 1.0 - floor * len(candidates))
    carriers = [n for n in candidates if n in mass] or list(candidates)
    shares = _scaled({n: max(0.0, mass.get(n, 0.0)) for n in carriers}, rest)
    return {n: floor + shares.get(n, 0.0) for n in candidates}


def _pool_load(
    names: Sequence[str],
    in_blackout: set[str],
    by_name: Mapping[str, BackendInput],
    loads: Mapping[str, float | None],
    *,
    assumed: float | None = None,
) -> float | None:
    """Mean load weighted by slots (``ready_endpoints * max_concurrency``), leaving out backends in blackout;
    an unknown load counts as ``assumed``, or is left out when that is None. None when nothing is left."""
    total = weight = 0.0
    for n in names:
        load = loads.get(n)
        if load is None:
            load = assumed
        if n in in_blackout or load is None:
            continue
        capacity = by_name[n].ready_endpoints * by_name[n].max_concurrency
        total += capacity * load
        weight += capacity
    return total / weight if weight > 0 else None


def _capped(
    target: dict[str, float], in_blackout: set[str], previous: Mapping[str, float], floor: float
) -> dict[str, float]:
    """Rule 7: a backend in blackout may not gain share; what it cannot take goes to the others."""
    caps = {n: max(previous.get(n, 0.0), floor) for n in in_blackout}
    excess = sum(max(0.0, target[n] - cap) for n, cap in caps.items())
    free = [n for n in target if n not in in_blackout]
    if excess <= 0 or not free:
        return target
    out = {n: min(target[n], caps[n]) if n in caps else target[n] for n in target}
    above = {n: target[n] - floor for n in free if target[n] - floor > _EPS}
    gain = _scaled(above if above else {n: 1.0 for n in free}, excess)
    for n, g in gain.items():
        out[n] += g
    return out


def _was_offloading(
    name: str, roster: _Roster, prev: ControllerState, previous: Mapping[str, float], floor: float
) -> bool:
    if name in prev.offloading:
        return bool(prev.offloading[name])
    # After a restart only the table's weights are known: fallbacks well above the floor while a preferred
    # backend still had traffic means the class was offloading.
    if not previous or not any(n in previous for n in roster.preferred):
        return False
    shares = [previous[n] for n in roster.fallbacks if n in previous]
    return sum(shares) > len(shares) * floor + 0.01


# Rules 8-9: damping and rounding.


def _usable_weights(weights: Mapping[str, float] | None) -> dict[str, float]:
    if not weights:
        return {}
    return {
        n: float(w) for n, w in weights.items() if isinstance(w, int | float) and math.isfinite(w) and w >= 0
    }


def _rebase(
    previous: Mapping[str, float],
    candidates: Sequence[str],
    floor: float,
    *,
    toward: Mapping[str, float] | None,
) -> dict[str, float]:
    """Previous weights on this cycle's candidates, summing to 1 with everyone at or above the floor.

    Departed candidates' share is handed out at once (to those below ``toward``, else in proportion to the
    weights); new candidates enter at the floor, taken from the shares above it.
    """
    base = {n: max(previous.get(n, 0.0), floor) for n in candidates}
    net = 1.0 - sum(base.values())
    if net > _EPS:
        gaps = {n: toward[n] - base[n] for n in candidates if toward[n] - base[n] > _EPS} if toward else {}
        if sum(gaps.values()) >= net:
            gain = _scaled(gaps, net)
        else:
            gain = {n: gaps.get(n, 0.0) for n in candidates}
            rest = net - sum(gain.values())
            for n, g in _scaled({n: base[n] for n in candidates}, rest).items():
                gain[n] += g
        for n, g in gain.items():
            base[n] += g
    elif net < -_EPS:
        above = {n: base[n] - floor for n in candidates if base[n] - floor > _EPS}
        for n, cut in _scaled(above, -net).items():
            base[n] -= cut
    return base


def _step(
    base: Mapping[str, float], target: Mapping[str, float], step: float, deadband: float
) -> dict[str, float]:
    """Move towards the target, each weight by at most ``step``, keeping the sum (rule 8)."""
    delta = {n: target[n] - base[n] for n in base}
    if not delta or max(abs(d) for d in delta.values()) < deadband:
        return dict(base)
    clipped = {n: max(-step, min(step, d)) for n, d in delta.items()}
    up = sum(d for d in clipped.values() if d > 0)
    down = -sum(d for d in clipped.values() if d < 0)
    if up <= 0 or down <= 0:
        return dict(base)
    # Shrink the larger side to match the smaller: magnitudes only shrink, so no bound is broken.
    scale_up, scale_down = (down / up, 1.0) if up > down else (1.0, up / down)
    return {n: base[n] + d * (scale_up if d > 0 else scale_down) for n, d in clipped.items()}


def _floor_for(floor: float, candidates: Sequence[str]) -> float:
    """The floor every candidate can actually get: at most an equal share."""
    return min(floor, 1.0 / len(candidates)) if candidates else floor


def _rounded(weights: Mapping[str, float], floor: float) -> dict[str, float]:
    """Rule 9: multiples of 1/_UNITS summing to exactly _UNITS units, each at least the floor."""
    names = list(weights)
    if not names:
        return {}
    clean = {n: max(0.0, weights[n]) if math.isfinite(weights[n]) else 0.0 for n in names}
    total = sum(clean.values())
    if total <= 0:
        clean, total = {n: 1.0 for n in names}, float(len(names))
    exact = {n: clean[n] / total * _UNITS for n in names}
    units = {n: math.floor(exact[n] + 1e-7) for n in names}
    left = _UNITS - sum(units.values())
    order = sorted(names, key=lambda n: (-(exact[n] - units[n]), n))
    for i in range(max(0, left)):
        units[order[i % len(order)]] += 1
    min_units = min(math.ceil(floor * _UNITS - 1e-7), _UNITS // len(names))
    for n in sorted(names):
        while units[n] < min_units:
            donor = min(names, key=lambda m: (-units[m], m))
            if units[donor] <= min_units:
                break
            units[donor] -= 1
            units[n] += 1
    return {n: units[n] / _UNITS for n in names}


# Small utilities.


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


def _finite_map(data: Any) -> dict[str, float]:
    if not isinstance(data, Mapping):
        return {}
    return {str(k): float(v) for k, v in data.items() if _finite_or_none(v) is not None}

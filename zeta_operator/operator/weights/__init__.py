"""The operator's one decision: per task class, the share of traffic each backend gets this control interval.

`decide` is pure: no I/O, no clock (``now`` is an argument), no randomness, no logging. Everything it
remembers between cycles is in `ControllerState`, which the operator stores as JSON and hands back next
cycle. Every threshold comes from the `RoutingPolicySpec`; the tuning constants of `control` (`MIN_MULTIPLIER`,
`MIN_CORRECTION` and `SMALL_GAIN`) bound the controller, they are not thresholds.

The package is layered as the rules are: `model` (inputs, outputs, state and knobs), `roster` (rule 1),
`load` (rules 2-4), `control` (rules 5-7), `shaping` (rules 8-9); `decide` below is the orchestration.

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
   (held); a held load older than ``staleAfter`` is forgotten (None, state Unknown). Each class's view of each
   of its fallbacks (`load.class_load`, rule 5) is smoothed the same way while it keeps being measured; a view
   with no counted reading is not held (the backend's smoothed load stands in for it).
5. **Target shares: integral control.** Every candidate gets the floor ``f = min(weightFloor / r,
   1/candidates)``, where ``r`` is the largest number of the class's candidates that serve one model (their
   ``model``); the remaining ``1 - f * candidates`` goes to the *carriers*. Why ``r``: the floor is there to
   probe, and eight ModelBackends of one model need no more probing than one. Per backend, the floors of a
   class with eight backends per size kept a third of it on its fallbacks at any load (docs/benchmarks.md,
   "scale-burst"). The controller's state is the previous weights themselves (so a restart from the routing
   table resumes it exactly). Its dead zone is the offload band: a
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
     repeated while the lagging measurement still shows it, ratchets the share down until it snaps back and
     offloading restarts. A burst far above the band is still shed at once;
   - normally the preferred backends carry and fallbacks keep the floor; if no preferred backend is reachable
     the fallbacks carry ("fallback: preferred unavailable");
   - while the class is *offloading*, the preferred group's share ``g`` (from the previous weights) is
     multiplied by the pool load's correction, between the preferred floors and its static share, and the rest
     goes to the fallbacks. It never sheds towards fallbacks that are on average as loaded as the preferred
     backends or above the high watermark (that would only move the queue). That is the preference bias: the
     preferred backends keep their load in the band and only the excess spills over;
   - a fallback's load, wherever rule 5 weighs fallbacks (that guard, the aim, their split of the spill), is
     the class's own view of it (`load.class_load`): its engine signals (cpu, memory, queue, KV cache, running,
     errors) and *this class's* latency against this class's objective, not its worst class. Why: another
     class's slow answers on a fallback say nothing about how fast this one would be answered there, and a
     fallback busy with its own requests shows it in its engine signals, which every view includes. Judged by
     its worst class, a fallback with one slow class of its own (long code answers on the coder) held every
     other class on an overloaded preferred backend although it would have answered them in time. The
     preferred backends keep their worst-class load: shedding a class relieves all the classes there.

   Why integral control: when load follows the weights, a target computed from loads alone (say, shares in
   proportion to headroom) has a loop gain above 1 near saturation. The weights then flip between two values
   every interval, and offloading drains the preferred backends below the low watermark, stops, refills them
   above the high watermark and starts again. A multiplicative correction lands a load proportional to its
   share at the aim in one step, and with smoothing it settles with damped overshoot.
5b. **A backend slowed by something other than its requests** (a co-tenant on its node, a throttled GPU): its
   load is above ``highWatermark`` while the engine's own signals (`load.demand_load`: cpu, memory, queue, KV
   cache, running, errors; no latency) are below ``lowWatermark``. It is remembered as *slowed* until its load
   is back below ``lowWatermark`` or its signals reach ``highWatermark`` (the two watermarks are the
   hysteresis; no new threshold). While every preferred backend of an offloading class is slowed, rule 5's
   "fallbacks as busy" guard does not hold the share: there is no queue to move, and a fallback that answers
   the class faster helps at once. Each fallback is judged as this class sees it (as in rule 5), the
   preferred load is corrected towards the mean of the preferred backends and the fallbacks below
   ``min(pool load, highWatermark)``, and only those fallbacks gain (the others' multipliers shrink as in rule
   5). With no such fallback nothing moves. Why: a slowed backend's latency does not fall when it sheds, so
   waiting until the fallbacks are on average less loaded than it would hold every share where it was.
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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ...api.common import BackendState
from ...api.policy import RoutingPolicySpec, TaskClass
from .control import _adaptive_target, _capped, _pool_load, _returned, _static_target, _was_offloading
from .load import _smooth, _smooth_class_loads, _state, backend_load, class_load, demand_load
from .model import (
    _RESOLUTION_BAND,
    BackendInput,
    ControllerState,
    Decision,
    Reading,
    Signal,
    WeightEvent,
    _elapsed_fraction,
    _index,
    _Knobs,
)
from .roster import _Roster, _roster, capable
from .shaping import _floor_for, _rebase, _rounded, _step, _usable_weights

__all__ = [
    "BackendInput",
    "ControllerState",
    "Decision",
    "Reading",
    "Signal",
    "WeightEvent",
    "backend_load",
    "capable",
    "decide",
    "static_weights",
]


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
        floor = _floor_for(knobs.floor, roster.candidates, by_name)
        out[task_class.name] = _rounded(_static_target(roster, by_name, floor), floor)
    return out


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
    # Only a class's fallbacks are judged by its view of them (rule 5).
    class_views = {
        c.name: {n: class_load(by_name[n], policy, c.name) for n in c.fallbacks or [] if n in by_name}
        for c in policy.classes
    }
    class_loads = _smooth_class_loads(class_views, prev, knobs, now, elapsed)
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

    slowed = _slowed(by_name, loads, policy, prev, knobs)
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
            slowed=slowed,
            class_loads=class_loads[task_class.name],
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
        slowed=slowed,
        class_loads=class_loads,
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


_Mode = Literal["adapt", "hold", "stale", "start"]


def _slowed(
    by_name: Mapping[str, BackendInput],
    loads: Mapping[str, float | None],
    policy: RoutingPolicySpec,
    prev: ControllerState,
    knobs: _Knobs,
) -> frozenset[str]:
    """Rule 5b's memory: a backend becomes *slowed* when its load is above the high watermark while the
    engine's own signals (`demand_load`) are below the low one; it stays so until its load is back below the
    low watermark or its signals reach the high one (the watermarks' own hysteresis, no new threshold).
    Unknown readings keep the previous state."""
    out = set()
    for name, backend in by_name.items():
        load, demand = loads.get(name), demand_load(backend, policy)
        if load is None or demand is None:
            if name in prev.slowed:
                out.add(name)
        elif name in prev.slowed:
            if load >= knobs.low and demand < knobs.high:
                out.add(name)
        elif load > knobs.high and demand < knobs.low:
            out.add(name)
    return frozenset(out)


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
    slowed: frozenset[str],
    class_loads: Mapping[str, float],
    step: float,
    stale_age: float | None,
) -> _ClassOutcome:
    roster = _roster(task_class, by_name, knobs)
    candidates = roster.candidates
    name = task_class.name
    previous = _usable_weights(prev.weights.get(name))
    events: list[WeightEvent] = []

    if not candidates:
        return _ClassOutcome({}, dict(roster.excluded), False, events)
    floor = _floor_for(knobs.floor, candidates, by_name)
    was_offloading = _was_offloading(name, roster, prev, previous, floor)
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
            slowed=slowed,
            class_loads=class_loads,
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

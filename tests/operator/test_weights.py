"""The decision function: properties over random fleets, policies and measurement sequences, then the
scenarios an operator of a real fleet cares about, on the sample fleet (4B general, 7B coder, 14B large).
Time is an argument: every test drives ``now`` itself."""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from zeta_operator.api.common import parse_duration
from zeta_operator.api.policy import RoutingPolicySpec, TaskClass
from zeta_operator.operator.weights import (
    BackendInput,
    ControllerState,
    Decision,
    Reading,
    backend_load,
    capable,
    decide,
    static_weights,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLE_SPEC: dict[str, Any] = yaml.safe_load((REPO / "manifests/samples/routingpolicy.yaml").read_text())[
    "spec"
]
T0 = 1_000_000.0
INTERVAL = 5.0
ROUNDING = 1e-4  # weights are multiples of 0.0001
RESOLUTION_BAND = 2.5e-4  # differences this small are rounding to the decision (weights.model), not change
PROPERTY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


# --- builders -----------------------------------------------------------------------------------------------


def policy_with(**sections: Mapping[str, Any]) -> RoutingPolicySpec:
    """The sample policy with some top-level sections replaced (camelCase keys, as in YAML)."""
    spec = copy.deepcopy(SAMPLE_SPEC)
    for key, value in sections.items():
        spec[key] = {**spec.get(key, {}), **value}
    return RoutingPolicySpec.model_validate(spec)


SAMPLE = policy_with()


def one_class_policy(*preferred: str, adaptation: Mapping[str, Any] | None = None) -> RoutingPolicySpec:
    """The sample policy with a single simple chat class served by ``preferred``."""
    spec = {k: v for k, v in SAMPLE_SPEC.items() if k != "defaultClass"}
    chat = {"name": "chat", "taskType": "chat", "complexity": {"max": 2}, "preferred": list(preferred)}
    return RoutingPolicySpec.model_validate(
        {**spec, "classes": [chat], "adaptation": {**spec["adaptation"], **(adaptation or {})}}
    )


SAMPLE_FLEET = {  # name: (tasks, max complexity, size, max concurrency), as in manifests/samples
    "general-4b": ({"chat", "summarize", "code"}, 2, 4.0, 32),
    "coder-7b": ({"code", "chat"}, 4, 7.0, 16),
    "large-14b": ({"chat", "code", "summarize", "reasoning"}, 5, 14.0, 8),
}


def signals_at(load: float | None) -> dict[str, Reading]:
    """Readings whose load (queue depth against the default threshold of 8 per endpoint) is ``load``."""
    return {} if load is None else {"queueDepth": Reading(load * 8.0, "ok")}


def sample_fleet(
    loads: Mapping[str, float | None] | None = None,
    *,
    ready: Mapping[str, int] | None = None,
    since: Mapping[str, float] | None = None,
    signals: Mapping[str, Mapping[str, Reading]] | None = None,
) -> list[BackendInput]:
    loads = loads or {}
    out = []
    for name, (tasks, ceiling, size, concurrency) in SAMPLE_FLEET.items():
        out.append(
            BackendInput(
                name=name,
                tasks=frozenset(tasks),
                max_complexity=ceiling,
                size_billions=size,
                max_concurrency=concurrency,
                ready_endpoints=(ready or {}).get(name, 1),
                newest_ready_since=(since or {}).get(name),
                signals=(signals or {}).get(name, signals_at(loads.get(name, 0.1))),
                latency={},
            )
        )
    return out


def no_data_fleet(**kw: Any) -> list[BackendInput]:
    return [replace(b, signals={"cpu": Reading(None, "no-data")}) for b in sample_fleet(**kw)]


def run(
    policy: RoutingPolicySpec,
    cycles: Sequence[Sequence[BackendInput]],
    *,
    previous: ControllerState | None = None,
    start: float = T0,
) -> list[Decision]:
    decisions: list[Decision] = []
    state = previous
    for i, backends in enumerate(cycles):
        d = decide(policy=policy, backends=backends, previous=state, now=start + i * INTERVAL)
        decisions.append(d)
        state = d.state
    return decisions


def floor_of(policy: RoutingPolicySpec, n: int) -> float:
    return min(policy.adaptation.weight_floor, 1.0 / n)


def expected_candidates(
    policy: RoutingPolicySpec, c: TaskClass, backends: Sequence[BackendInput]
) -> set[str]:
    """Rule 1 of the module, written out again independently."""
    by_name = {b.name: b for b in backends}
    usable = {n for n in [*c.preferred, *(c.fallbacks or [])] if n in by_name and capable(by_name[n], c)}
    ready = {n for n in usable if by_name[n].ready_endpoints > 0}
    if c.complexity.max <= policy.offload.max_complexity:
        return ready
    preferred_sizes = [by_name[n].size_billions for n in c.preferred if n in usable]
    out = {n for n in ready if n in c.preferred}
    for n in ready - set(c.preferred):
        size = by_name[n].size_billions
        if not preferred_sizes or (
            None not in preferred_sizes and size is not None and size >= max(s for s in preferred_sizes if s)
        ):
            out.add(n)
    return out


def check_invariants(policy: RoutingPolicySpec, backends: Sequence[BackendInput], d: Decision) -> None:
    by_name = {b.name: b for b in backends}
    for c in policy.classes:
        w = d.weights[c.name]
        assert set(w) == expected_candidates(policy, c, backends), (c.name, w)
        assert all(math.isfinite(v) and v >= 0 for v in w.values()), w
        if w:
            assert abs(sum(w.values()) - 1.0) <= 1e-9, w
            floor = floor_of(policy, len(w))
            assert all(v >= floor - ROUNDING for v in w.values()), (floor, w)
        for name in w:
            assert capable(by_name[name], c) and by_name[name].ready_endpoints > 0
            assert name in d.reasons[c.name]
            assert round(w[name] * 10_000) == pytest.approx(w[name] * 10_000, abs=1e-6)
    for load in d.loads.values():
        assert load is None or math.isfinite(load)
    json.dumps(d.state.to_json(), allow_nan=False)


# --- strategies ---------------------------------------------------------------------------------------------

NAMES = ("a", "b", "c", "d", "e")
TASKS = ("chat", "code")
SIGNAL_NAMES = ("cpu", "memory", "queueDepth", "kvCache", "errorRate", "running")

readings = st.one_of(
    st.builds(Reading, st.floats(0.0, 3.0), st.just("ok")),
    st.builds(Reading, st.floats(0.0, 1.0), st.just("ok")),
    st.just(Reading(None, "no-data")),
    st.just(Reading(None, "error")),
    st.sampled_from(
        [Reading(math.nan, "ok"), Reading(math.inf, "ok"), Reading(-math.inf, "ok"), Reading(-1, "ok")]
    ),
)


@st.composite
def fleets(draw: st.DrawFn) -> list[BackendInput]:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=2, max_size=5, unique=True))
    return [
        BackendInput(
            name=n,
            tasks=frozenset(draw(st.sets(st.sampled_from(TASKS), min_size=1))),
            max_complexity=draw(st.integers(1, 5)),
            size_billions=draw(st.sampled_from([None, 1.0, 4.0, 7.0, 14.0])),
            max_concurrency=draw(st.integers(1, 64)),
            ready_endpoints=draw(st.integers(1, 3)),
            newest_ready_since=None,
            signals={},
            latency={},
        )
        for n in names
    ]


@st.composite
def policies(draw: st.DrawFn, names: Sequence[str]) -> RoutingPolicySpec:
    pool = [*names, "ghost"]
    classes = []
    for i in range(draw(st.integers(1, 3))):
        lo = draw(st.integers(1, 5))
        preferred = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=2, unique=True))
        rest = [n for n in pool if n not in preferred]
        fallbacks = draw(st.lists(st.sampled_from(rest), max_size=3, unique=True)) if rest else []
        classes.append(
            {
                "name": f"class-{i}",
                "taskType": draw(st.sampled_from(TASKS)),
                "complexity": {"min": lo, "max": draw(st.integers(lo, 5))},
                "preferred": preferred,
                "fallbacks": fallbacks,
                "latencyObjective": draw(st.sampled_from(["500ms", "4s", "30s"])),
            }
        )
    low = draw(st.floats(0.0, 1.0))
    return RoutingPolicySpec.model_validate(
        {
            "backends": {"names": list(names)},
            "routingTable": {"configMapName": "t"},
            "classes": classes,
            "adaptation": {
                "interval": "5s",
                "smoothing": draw(st.floats(0.2, 1.0)),
                "maxStep": draw(st.floats(0.05, 0.5)),
                "weightFloor": draw(st.floats(0.0, 0.1)),
                "hysteresis": draw(st.floats(0.0, 0.1)),
                "staleAfter": draw(st.sampled_from(["20s", "60s"])),
                "blackout": "10s",
            },
            "offload": {
                "lowWatermark": low,
                "highWatermark": low + draw(st.floats(0.05, 1.0)),
                "maxComplexity": draw(st.integers(1, 5)),
            },
        }
    )


@st.composite
def measurements(draw: st.DrawFn, policy: RoutingPolicySpec) -> tuple[dict[str, Reading], dict[str, Reading]]:
    chosen = draw(st.lists(st.sampled_from(SIGNAL_NAMES), max_size=3, unique=True))
    signals = {s: draw(readings) for s in chosen}
    latency = {}
    if draw(st.booleans()):
        latency[policy.classes[0].name] = draw(readings)
    return signals, latency


@st.composite
def scenarios(
    draw: st.DrawFn, *, endpoints_change: bool, max_cycles: int = 20
) -> tuple[RoutingPolicySpec, list[list[BackendInput]]]:
    fleet = draw(fleets())
    policy = draw(policies([b.name for b in fleet]))
    cycles = []
    for _ in range(draw(st.integers(2, max_cycles))):
        cycle = []
        for b in fleet:
            signals, latency = draw(measurements(policy))
            ready = draw(st.integers(0, 3)) if endpoints_change else b.ready_endpoints
            cycle.append(replace(b, signals=signals, latency=latency, ready_endpoints=ready))
        cycles.append(cycle)
    return policy, cycles


# --- properties ---------------------------------------------------------------------------------------------


@PROPERTY
@given(scenarios(endpoints_change=True))
def test_every_class_is_a_distribution_over_capable_reachable_candidates(
    scenario: tuple[RoutingPolicySpec, list[list[BackendInput]]],
) -> None:
    policy, cycles = scenario
    for backends, d in zip(cycles, run(policy, cycles), strict=True):
        check_invariants(policy, backends, d)


@PROPERTY
@given(scenarios(endpoints_change=False, max_cycles=30))
def test_each_weight_moves_at_most_max_step_per_interval(
    scenario: tuple[RoutingPolicySpec, list[list[BackendInput]]],
) -> None:
    policy, cycles = scenario
    bound = policy.adaptation.max_step + ROUNDING + 1e-9
    decisions = run(policy, cycles)
    for before, after in itertools.pairwise(decisions):
        for c in policy.classes:
            old, new = before.weights[c.name], after.weights[c.name]
            assert set(old) == set(new)
            for name in new:
                assert abs(new[name] - old[name]) <= bound, (c.name, name, old, new)


@PROPERTY
@given(scenarios(endpoints_change=False, max_cycles=10), st.data())
def test_constant_load_settles_without_oscillation(
    scenario: tuple[RoutingPolicySpec, list[list[BackendInput]]], data: st.DataObject
) -> None:
    policy, cycles = scenario
    steady = [
        replace(b, signals={"cpu": Reading(data.draw(st.floats(0.0, 2.0)), "ok")}, latency={})
        for b in cycles[-1]
    ]
    # Corrections are >= MIN_CORRECTION: at most ~28 intervals from static to a bound, after the EWMA settles.
    decisions = run(policy, [*cycles, *[steady] * 120])
    last = [d.weights for d in decisions[-20:]]
    assert all(w == last[0] for w in last)
    assert all(d.offloading == decisions[-1].offloading for d in decisions[-20:])


@PROPERTY
@given(fleets(), st.data())
def test_constant_load_from_the_start_settles_within_40_cycles(
    fleet: list[BackendInput], data: st.DataObject
) -> None:
    policy = data.draw(policies([b.name for b in fleet]))
    # Worst case: a share corrected by the minimum 10% per interval from 0.95 to its 0.05 bound (29 intervals),
    # paced by a small maxStep at first. Loads that follow the weights settle far sooner (closed-loop tests).
    steady = [replace(b, signals={"cpu": Reading(data.draw(st.floats(0.0, 2.0)), "ok")}) for b in fleet]
    decisions = run(policy, [steady] * 60)
    assert all(d.weights == decisions[-1].weights for d in decisions[-20:])
    assert all(d.offloading == decisions[-1].offloading for d in decisions[-20:])


@PROPERTY
@given(scenarios(endpoints_change=True, max_cycles=12))
def test_same_inputs_give_the_same_decision(
    scenario: tuple[RoutingPolicySpec, list[list[BackendInput]]],
) -> None:
    policy, cycles = scenario
    assert run(policy, cycles) == run(policy, cycles)


@PROPERTY
@given(scenarios(endpoints_change=True, max_cycles=12))
def test_controller_state_round_trips_through_json(
    scenario: tuple[RoutingPolicySpec, list[list[BackendInput]]],
) -> None:
    policy, cycles = scenario
    state = None
    for i, backends in enumerate(cycles):
        d = decide(policy=policy, backends=backends, previous=state, now=T0 + i * INTERVAL)
        text = json.dumps(d.state.to_json(), allow_nan=False)
        restored = ControllerState.from_json(json.loads(text))
        assert restored == d.state
        # Continuing from the restored state is the same as continuing from the original.
        state = restored


@PROPERTY
@given(scenarios(endpoints_change=False, max_cycles=12))
def test_an_outage_holds_weights_exactly_then_falls_back_to_static(
    scenario: tuple[RoutingPolicySpec, list[list[BackendInput]]],
) -> None:
    policy, cycles = scenario
    # Whatever the history, the last cycle before the outage counts a reading, so there is something to hold.
    measured = [replace(b, signals={**b.signals, "cpu": Reading(0.5, "ok")}) for b in cycles[-1]]
    history = [*cycles, measured]
    last = run(policy, history)[-1]
    assert last.metrics_available and last.state.last_good_at is not None
    blind = [
        replace(b, signals={s: Reading(None, "error") for s in SIGNAL_NAMES}, latency={}) for b in cycles[-1]
    ]
    stale_after = parse_duration(policy.adaptation.stale_after)
    start = T0 + len(history) * INTERVAL
    outage = run(policy, [blind] * 60, previous=last.state, start=start)
    fallbacks = 0
    for i, d in enumerate(outage):
        assert not d.metrics_available
        fallbacks += sum(e.reason == "StaticFallback" for e in d.events)
        if start + i * INTERVAL - last.state.last_good_at <= stale_after:
            assert d.weights == last.weights
            assert not d.stale
            assert all(
                d.reasons[c][n] == "held: metrics unavailable" for c, w in d.weights.items() for n in w
            )
        else:
            assert d.stale
        check_invariants(policy, blind, d)
    assert fallbacks == (0 if last.stale else 1)
    static = static_weights(policy, blind)
    for name, weights in outage[-1].weights.items():
        assert set(weights) == set(static[name])
        for backend, share in weights.items():  # reached at max step, up to the deadband
            assert share == pytest.approx(static[name][backend], abs=policy.adaptation.hysteresis + ROUNDING)


@PROPERTY
@given(scenarios(endpoints_change=False, max_cycles=12), st.data())
def test_a_candidate_losing_its_endpoints_loses_its_share_at_once(
    scenario: tuple[RoutingPolicySpec, list[list[BackendInput]]], data: st.DataObject
) -> None:
    policy, cycles = scenario
    decisions = run(policy, cycles)
    victim = data.draw(st.sampled_from([b.name for b in cycles[-1]]))
    after = [replace(b, ready_endpoints=0) if b.name == victim else b for b in cycles[-1]]
    d = decide(policy=policy, backends=after, previous=decisions[-1].state, now=T0 + len(cycles) * INTERVAL)
    check_invariants(policy, after, d)
    for c in policy.classes:
        assert victim not in d.weights[c.name]
    assert d.backend_states[victim] == "Unavailable"


@PROPERTY
@given(st.floats(0.65, 0.84), st.booleans(), st.lists(st.floats(0.61, 0.84), min_size=5, max_size=25))
def test_load_between_the_watermarks_never_toggles_offloading(
    settle: float, overloaded_first: bool, band: list[float]
) -> None:
    first = [sample_fleet({"coder-7b": 2.0 if overloaded_first else 0.1})] * 10
    decisions = run(
        SAMPLE, first + [sample_fleet({"coder-7b": settle})] + [sample_fleet({"coder-7b": x}) for x in band]
    )
    assert decisions[9].offloading["code-simple"] is overloaded_first
    for d in decisions[10:]:
        assert d.offloading["code-simple"] is overloaded_first
        assert not [e for e in d.events if e.reason.startswith("Offload")]


@PROPERTY
@given(
    st.floats(1.0, 3.0),
    st.floats(0.0, 0.5),
    st.floats(0.3, 1.0),
    st.floats(0.05, 0.5),
    st.floats(0.0, 0.1),
)
@example(overload=2.024964728493618, idle=0.46875, smoothing=1.0, max_step=0.125, hysteresis=0.0)
@example(overload=1.0, idle=0.0, smoothing=0.6028, max_step=0.05, hysteresis=0.0)
def test_overload_shifts_simple_work_then_returns_to_static(
    overload: float, idle: float, smoothing: float, max_step: float, hysteresis: float
) -> None:
    policy = policy_with(adaptation={"smoothing": smoothing, "maxStep": max_step, "hysteresis": hysteresis})
    static = static_weights(policy, sample_fleet())
    calm = {n: idle for n in SAMPLE_FLEET}
    hot = {**calm, "coder-7b": overload}
    moves = math.ceil(1 / max_step) + 1
    # Bounds: the EWMA carries 0.5 past 0.85 within 4 intervals at smoothing >= 0.3; the controller then sheds
    # by at least 10% per interval (MIN_CORRECTION; proportionate while the load is less than a band's width
    # above the band, S / load once it is further), 0.96 -> 0.2 within 10; coming back, it needs at most 10 intervals
    # for the EWMA to fall from 3 below 0.6, then grows by >= 0.725 / 0.6 per interval, 0.02 -> 0.96 in 21.
    hot_cycles, calm_cycles = 4 + 10 + moves, 10 + 21 + moves
    decisions = run(
        policy,
        [sample_fleet(calm)] * 3 + [sample_fleet(hot)] * hot_cycles + [sample_fleet(calm)] * calm_cycles,
    )
    during = decisions[3 + hot_cycles - 1]
    assert during.offloading["code-simple"] and during.offloading["code-complex"]
    assert during.weights["code-simple"]["coder-7b"] < 0.2
    assert during.weights["code-simple"]["general-4b"] > 0.5  # the small model takes simple code
    assert during.weights["code-complex"]["large-14b"] > 0.5  # complex code only goes up, to the 14B
    assert during.weights["reasoning"] == {"large-14b": 1.0}
    shares = [d.weights["code-simple"]["coder-7b"] for d in decisions[3 : 3 + hot_cycles]]
    # Never grows while hot; at its lower bound the largest-remainder rounding of the other shares may move it
    # by one grid unit (0.0216 -> 0.0217 in the pinned example), which is rounding, not a correction.
    assert all(later <= earlier + ROUNDING + 1e-12 for earlier, later in itertools.pairwise(shares)), shares
    assert shares[-1] < shares[0]
    after = decisions[-1]
    assert not any(after.offloading.values())
    # Back to static up to the deadband: the hysteresis, or the decision's resolution band when that is larger
    # (a pinned-down random case ended at 0.9798 for 0.98 with hysteresis 0).
    settled = max(hysteresis, RESOLUTION_BAND) + ROUNDING
    for name, weights in static.items():
        for backend, share in weights.items():
            assert after.weights[name][backend] == pytest.approx(share, abs=settled)


def closed_loop(policy: RoutingPolicySpec, task_class: str, demand: Sequence[float]) -> list[Decision]:
    """A fleet whose load follows the weights: ``demand[i]`` requests in flight for ``task_class`` in cycle i,
    spread by the last decision's weights; load = requests per slot (1.0 = every slot busy)."""
    decisions: list[Decision] = []
    for i, requests in enumerate(demand):
        weights = decisions[-1].weights[task_class] if decisions else {}
        loads = {n: requests * weights.get(n, 0.0) / (SAMPLE_FLEET[n][3]) for n in SAMPLE_FLEET}
        previous = decisions[-1].state if decisions else None
        decisions.append(
            decide(policy=policy, backends=sample_fleet(loads), previous=previous, now=T0 + i * INTERVAL)
        )
    return decisions


@PROPERTY
@given(
    st.sampled_from(["code-simple", "chat"]),
    st.floats(0.0, 120.0),
    st.floats(0.0, 120.0),
    st.floats(0.3, 1.0),
    st.floats(0.05, 0.5),
    st.floats(0.0, 0.1),
)
def test_in_a_closed_loop_the_weights_settle_instead_of_flapping(
    task_class: str, before: float, after: float, smoothing: float, max_step: float, hysteresis: float
) -> None:
    adaptation = {"smoothing": smoothing, "maxStep": max_step, "hysteresis": hysteresis}
    if task_class == "chat":  # two preferred backends of different capacity, no fallback
        policy = one_class_policy("general-4b", "coder-7b", adaptation=adaptation)
    else:  # one preferred coder, two fallbacks (4B smaller, 14B larger)
        policy = policy_with(adaptation=adaptation)
    decisions = closed_loop(policy, task_class, [before] * 40 + [after] * 120)
    settled = decisions[-20:]
    assert all(d.weights[task_class] == settled[0].weights[task_class] for d in settled)
    assert all(d.offloading[task_class] == settled[0].offloading[task_class] for d in settled)
    toggles = sum(
        a.offloading[task_class] != b.offloading[task_class] for a, b in itertools.pairwise(decisions[40:])
    )
    assert toggles <= 2  # at most one start and one stop after the demand changed
    coder_alone = after * 0.96 / 16
    if (
        task_class == "code-simple" and coder_alone < 0.6
    ):  # the coder could take it all below the low watermark
        static = static_weights(policy, sample_fleet())[task_class]
        assert settled[-1].weights[task_class] == pytest.approx(static, abs=hysteresis + ROUNDING)


@pytest.mark.parametrize("task_class", ["code-simple", "chat"])
@pytest.mark.parametrize(
    ("before", "after"), [(10, 40), (10, 50), (5, 20), (40, 10), (60, 25), (10, 15), (10, 30), (10, 70)]
)
def test_in_a_closed_loop_a_demand_step_settles_for_every_tuning(
    task_class: str, before: int, after: int
) -> None:
    """The same as the property above, on a fixed grid that covers the corners where flapping used to hide:
    slow smoothing with offloading, and two busy preferred backends near the top of the band."""
    for smoothing, max_step, hysteresis in itertools.product([0.2, 1.0], [0.2, 0.5], [0.0, 0.05]):
        adaptation = {"smoothing": smoothing, "maxStep": max_step, "hysteresis": hysteresis}
        if task_class == "chat":
            policy = one_class_policy("general-4b", "coder-7b", adaptation=adaptation)
        else:
            policy = policy_with(adaptation=adaptation)
        decisions = closed_loop(policy, task_class, [before] * 40 + [after] * 120)
        settled = decisions[-20:]
        assert all(d.weights[task_class] == settled[0].weights[task_class] for d in settled), adaptation
        flags = [d.offloading[task_class] for d in decisions[40:]]
        assert sum(a != b for a, b in itertools.pairwise(flags)) <= 2, adaptation


def test_in_a_noisy_lagging_closed_loop_steady_demand_keeps_the_weights_steady() -> None:
    """Steady demand that puts the coder near the top of the band at the static split (0.78), read with 10%
    noise and 4 intervals late, as the DES does with Poisson arrivals on six slots and a 10 s latency window.
    Without noise or lag the weights never move. With full corrections to every crossing of the band's edges
    the share wandered 0.45-0.96 and offloading started and stopped again and again (the
    return-then-re-offload cycle of docs/benchmarks.md); proportionate corrections (rule 5) keep it steady."""
    policy = policy_with(adaptation={"smoothing": 0.6, "maxStep": 0.25})
    rng = random.Random(2)
    decisions: list[Decision] = []
    for i in range(200):
        weights = decisions[-5].weights["code-simple"] if len(decisions) > 4 else {}
        loads = {
            n: max(0.0, 13 * weights.get(n, 0.0) / SAMPLE_FLEET[n][3] * (1 + rng.gauss(0, 0.1)))
            for n in SAMPLE_FLEET
        }
        previous = decisions[-1].state if decisions else None
        decisions.append(
            decide(policy=policy, backends=sample_fleet(loads), previous=previous, now=T0 + i * INTERVAL)
        )
    steady = decisions[100:]
    shares = [d.weights["code-simple"]["coder-7b"] for d in steady]
    toggles = sum(
        a.offloading["code-simple"] != b.offloading["code-simple"] for a, b in itertools.pairwise(steady)
    )
    assert statistics.pstdev(shares) < 0.05  # the bar for steady load
    assert toggles <= 1


@PROPERTY
@given(st.lists(st.tuples(st.floats(0.6, 0.85), st.floats(0.6, 0.85)), min_size=3, max_size=20))
def test_loads_inside_the_band_leave_the_weights_alone(loads: list[tuple[float, float]]) -> None:
    policy = one_class_policy("general-4b", "coder-7b")
    static = static_weights(policy, sample_fleet())
    cycles = [sample_fleet({"general-4b": a, "coder-7b": b}) for a, b in loads]
    for d in run(policy, cycles):
        assert d.weights == static


def test_a_shed_backend_that_cannot_be_measured_drifts_back_to_its_static_share() -> None:
    policy = one_class_policy("general-4b", "coder-7b")
    shed = run(policy, [sample_fleet({"general-4b": 0.7, "coder-7b": 2.0})] * 20)[-1]
    assert shed.weights["chat"]["coder-7b"] < 0.1
    # Its metrics vanish; once the held load is older than staleAfter it is unknown, not bad.
    blind = {"coder-7b": {"cpu": Reading(None, "error")}}
    later = run(
        policy, [sample_fleet({"general-4b": 0.7}, signals=blind)] * 30, previous=shed.state, start=T0 + 100
    )
    assert later[-1].loads["coder-7b"] is None
    assert later[-1].weights == static_weights(policy, sample_fleet())


def test_a_busy_group_is_not_crept_apart() -> None:
    # Both preferred backends far above the band, within 10% of their mean: nothing to even out. Against loads
    # that do not follow the weights, a smaller correction would creep for hundreds of intervals.
    policy = one_class_policy("general-4b", "coder-7b")
    decisions = run(policy, [sample_fleet({"general-4b": 2.35, "coder-7b": 2.06})] * 30)
    assert all(d.weights == static_weights(policy, sample_fleet()) for d in decisions)
    # Far apart, the busier one sheds.
    last = run(policy, [sample_fleet({"general-4b": 3.0, "coder-7b": 2.0})] * 30)[-1]
    assert last.weights["chat"]["general-4b"] < 0.1


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.dictionaries(st.text(min_size=1, max_size=5), st.floats(0, 1), max_size=3),
        max_size=3,
    ),
    st.dictionaries(st.text(min_size=1, max_size=5), st.floats(0, 10), max_size=3),
    st.dictionaries(st.text(min_size=1, max_size=5), st.booleans(), max_size=3),
    st.none() | st.floats(0, 2e9),
    st.booleans(),
    st.frozensets(st.text(min_size=1, max_size=5), max_size=3),
    st.frozensets(st.text(min_size=1, max_size=5), max_size=3),
    st.dictionaries(
        st.text(min_size=1, max_size=5),
        st.dictionaries(st.text(min_size=1, max_size=5), st.floats(0, 10), max_size=3),
        max_size=3,
    ),
)
def test_any_controller_state_round_trips(
    weights: dict[str, dict[str, float]],
    loads: dict[str, float],
    offloading: dict[str, bool],
    last_good_at: float | None,
    stale: bool,
    overloaded: frozenset[str],
    slowed: frozenset[str],
    class_loads: dict[str, dict[str, float]],
) -> None:
    state = ControllerState(
        weights=weights,
        loads=loads,
        measured_at=dict.fromkeys(loads, T0),
        offloading=offloading,
        last_good_at=last_good_at,
        stale=stale,
        overloaded=overloaded,
        slowed=slowed,
        class_loads=class_loads,
        decided_at=last_good_at,
    )
    assert ControllerState.from_json(json.loads(json.dumps(state.to_json()))) == state


# --- loads --------------------------------------------------------------------------------------------------


def one_backend(signals: Mapping[str, Reading], latency: Mapping[str, Reading] | None = None) -> BackendInput:
    return replace(sample_fleet()[0], signals=signals, latency=latency or {})


@pytest.mark.parametrize(
    ("signals", "latency", "load"),
    [
        ({"cpu": Reading(0.425, "ok")}, {}, 0.5),  # against thresholds.cpu 0.85
        ({"memory": Reading(0.9, "ok")}, {}, 1.0),
        ({"queueDepth": Reading(4.0, "ok")}, {}, 0.5),  # per endpoint, against 8
        ({"kvCache": Reading(0.475, "ok")}, {}, 0.5),
        ({"errorRate": Reading(0.5, "ok")}, {}, 2.5),  # errors are load: 0.5 against 0.2
        ({"running": Reading(16.0, "ok")}, {}, 0.5),  # against maxConcurrency 32
        ({}, {"chat-simple": Reading(6.0, "ok")}, 1.5),  # 6s against the 4s objective
        (
            {"cpu": Reading(0.17, "ok"), "errorRate": Reading(0.1, "ok")},
            {"summarize": Reading(2.0, "ok")},
            0.5,
        ),
        ({"cpu": Reading(math.nan, "ok"), "memory": Reading(0.45, "ok")}, {}, 0.5),  # NaN is an error
        ({"cpu": Reading(math.inf, "ok")}, {}, None),
        ({"cpu": Reading(-1.0, "ok")}, {}, None),
        ({"cpu": Reading(None, "ok")}, {}, None),
        ({"cpu": Reading(0.9, "error"), "memory": Reading(None, "no-data")}, {}, None),
        ({}, {"no-such-class": Reading(100.0, "ok")}, None),
        ({}, {}, None),
    ],
)
def test_backend_load_is_the_worst_counted_signal(
    signals: dict[str, Reading], latency: dict[str, Reading], load: float | None
) -> None:
    got = backend_load(one_backend(signals, latency), SAMPLE)
    assert got == (None if load is None else pytest.approx(load))


def test_capability_is_task_type_and_complexity_ceiling() -> None:
    classes = {c.name: c for c in SAMPLE.classes}
    general, coder, large = sample_fleet()
    assert capable(general, classes["code-simple"])
    assert not capable(general, classes["code-complex"])  # ceiling 2 < 4
    assert not capable(coder, classes["summarize"])  # no summarize task
    assert capable(large, classes["reasoning"])


# --- scenarios on the sample fleet --------------------------------------------------------------------------


def test_static_preferences_of_the_sample() -> None:
    assert static_weights(SAMPLE, sample_fleet()) == {
        "chat-simple": {"general-4b": 0.96, "large-14b": 0.02, "coder-7b": 0.02},
        "summarize": {"general-4b": 0.98, "large-14b": 0.02},
        "code-simple": {"coder-7b": 0.96, "general-4b": 0.02, "large-14b": 0.02},
        "code-complex": {"coder-7b": 0.98, "large-14b": 0.02},
        "reasoning": {"large-14b": 1.0},
    }


def test_the_replicas_of_one_model_share_its_floor() -> None:
    """Eight ModelBackends of the 14B are eight probes of one model: together they keep one floor, not eight
    (per backend, the floors kept a third of a class on its fallbacks at any load: docs/benchmarks.md)."""
    fleet = sample_fleet()
    large = next(b for b in fleet if b.name == "large-14b")
    replicas = [replace(large, name=f"large-14b-{i}", model="large-14b") for i in range(8)]
    fleet = [b for b in fleet if b.name != "large-14b"] + replicas
    spec = copy.deepcopy(SAMPLE_SPEC)
    for c in spec["classes"]:
        for key in ("preferred", "fallbacks"):
            c[key] = [
                m for n in c.get(key, []) for m in ([r.name for r in replicas] if n == "large-14b" else [n])
            ]
    weights = static_weights(RoutingPolicySpec.model_validate(spec), fleet)
    chat = weights["chat-simple"]
    assert [chat[r.name] for r in replicas] == [pytest.approx(0.0025)] * 8  # 0.02 / 8 each
    assert chat["coder-7b"] == pytest.approx(0.0025)  # one floor per class: the most replicated model's share
    assert chat["general-4b"] == pytest.approx(1 - 9 * 0.0025)
    assert weights["reasoning"] == {r.name: pytest.approx(0.125) for r in replicas}
    # A decision under an ordinary load keeps those floors (the sample fleet's, one backend per model, are
    # pinned by test_static_preferences_of_the_sample).
    d = decide(policy=RoutingPolicySpec.model_validate(spec), backends=fleet, previous=None, now=T0)
    assert sum(d.weights["chat-simple"][r.name] for r in replicas) == pytest.approx(0.02)


def test_preferred_share_follows_ready_endpoints() -> None:
    policy = one_class_policy("general-4b", "large-14b")
    fleet = sample_fleet(ready={"general-4b": 3, "large-14b": 1})
    assert static_weights(policy, fleet) == {"chat": {"general-4b": 0.74, "large-14b": 0.26}}


def test_first_cycle_starts_from_static_preferences() -> None:
    d = decide(policy=SAMPLE, backends=sample_fleet(), previous=None, now=T0)
    assert d.weights == static_weights(SAMPLE, sample_fleet())
    assert d.metrics_available and not d.stale
    assert d.reasons["code-simple"] == {"coder-7b": "preferred", "general-4b": "floor", "large-14b": "floor"}
    assert d.backend_states == {"coder-7b": "Healthy", "general-4b": "Healthy", "large-14b": "Healthy"}


def test_an_overloaded_coder_spills_simple_code_down_and_complex_code_up() -> None:
    decisions = run(SAMPLE, [sample_fleet({"coder-7b": 1.12})] * 8)
    started = next(i for i, d in enumerate(decisions) if d.offloading["code-simple"])
    events = {e.reason: e for e in decisions[started].events}
    assert "coder-7b load" in events["OffloadStarted"].message
    assert "> high watermark 0.85" in events["OffloadStarted"].message
    assert events["BackendOverloaded"].warning and events["BackendOverloaded"].backend == "coder-7b"
    last = decisions[-1]
    assert last.backend_states["coder-7b"] == "Overloaded"
    assert re.fullmatch(
        r"offload: coder-7b load 1\.\d\d > high watermark 0\.85", last.reasons["code-simple"]["general-4b"]
    )
    assert last.reasons["code-simple"]["coder-7b"] == "preferred (offloading)"
    assert last.weights["code-simple"]["general-4b"] > last.weights["code-simple"]["large-14b"] > 0.02
    assert set(last.weights["code-complex"]) == {"coder-7b", "large-14b"}
    assert last.weights["code-complex"]["large-14b"] > 0.5
    # Classes whose preferred backend is fine do not move.
    assert last.weights["chat-simple"] == static_weights(SAMPLE, sample_fleet())["chat-simple"]


def test_complex_work_never_goes_to_a_smaller_model_even_if_it_claims_the_complexity() -> None:
    small = BackendInput("small-3b", frozenset({"code"}), 5, 3.0, 64, 2, None, signals_at(0.0), {})
    spec = copy.deepcopy(SAMPLE_SPEC)
    for c in spec["classes"]:
        if c["name"] in ("code-simple", "code-complex"):
            c["fallbacks"] = ["small-3b", *c["fallbacks"]]
    policy = RoutingPolicySpec.model_validate(spec)
    decisions = run(policy, [[*sample_fleet({"coder-7b": 2.0}), small]] * 15)
    for d in decisions:
        assert "small-3b" not in d.weights["code-complex"]
    last = decisions[-1]
    assert last.reasons["code-complex"]["small-3b"] == "excluded: complex class, 3B < preferred 7B"
    assert last.weights["code-simple"]["small-3b"] > 0.3  # simple code may go down


def test_a_fallback_of_unknown_size_never_takes_complex_work() -> None:
    fleet = [
        replace(b, size_billions=None) if b.name == "large-14b" else b
        for b in sample_fleet({"coder-7b": 2.0})
    ]
    last = run(SAMPLE, [fleet] * 10)[-1]
    assert last.weights["code-complex"] == {"coder-7b": 1.0}
    assert (
        last.reasons["code-complex"]["large-14b"]
        == "excluded: complex class and this backend's size is unknown"
    )
    assert last.offloading["code-complex"] is False


def test_errors_count_as_load() -> None:
    failing = {"general-4b": {"errorRate": Reading(0.5, "ok"), "queueDepth": Reading(0.0, "ok")}}
    last = run(SAMPLE, [sample_fleet(signals=failing)] * 10)[-1]
    assert last.loads["general-4b"] == pytest.approx(2.5)
    assert last.offloading["chat-simple"]
    assert last.weights["chat-simple"]["general-4b"] < 0.2


def test_load_in_the_band_keeps_offloading_until_below_the_low_watermark() -> None:
    policy = policy_with(adaptation={"smoothing": 1.0})
    band = [0.5, 0.9, 0.7, 0.62, 0.84, 0.61]
    decisions = run(policy, [sample_fleet({"coder-7b": x}) for x in [*band, *[0.3] * 8]])
    flags = [d.offloading["code-simple"] for d in decisions]
    assert flags[: len(band)] == [False, True, True, True, True, True]
    # Below the low watermark the coder takes its share back, at most max step per interval, and only then
    # does the offload end: ending it never throws the spilled traffic back at once.
    stop = flags.index(False, len(band))
    shares = [d.weights["code-simple"]["coder-7b"] for d in decisions[len(band) - 1 : stop + 1]]
    assert shares == sorted(shares) and shares[-1] == 0.96
    assert all(b - a <= 0.2 + ROUNDING for a, b in itertools.pairwise(shares))
    assert not any(flags[stop:])
    stopped = [
        e
        for d in decisions
        for e in d.events
        if (e.reason, e.task_class) == ("OffloadStopped", "code-simple")
    ]
    assert len(stopped) == 1 and "0.30 < low watermark 0.60" in stopped[0].message
    assert decisions[2].backend_states["coder-7b"] == "Saturated"
    recovered = [e for d in decisions for e in d.events if e.reason == "BackendRecovered"]
    assert len(recovered) == 1 and "coder-7b load 0.30 < low watermark 0.60" in recovered[0].message


def test_weights_move_at_most_max_step_and_ignore_small_changes() -> None:
    policy = policy_with(adaptation={"smoothing": 1.0, "maxStep": 0.1, "hysteresis": 0.05})
    decisions = run(policy, [sample_fleet({"coder-7b": 3.0})] * 6)
    shares = [d.weights["code-simple"]["coder-7b"] for d in decisions]
    assert shares[:5] == pytest.approx([0.86, 0.76, 0.66, 0.56, 0.46])
    # Two preferred backends whose loads differ a little: within the hysteresis nothing moves.
    two = one_class_policy("general-4b", "coder-7b")
    d = run(two, [sample_fleet({"general-4b": 0.1, "coder-7b": 0.15})] * 5)
    assert all(x.weights == d[0].weights == static_weights(two, sample_fleet()) for x in d)


def test_an_early_cycle_moves_only_its_fraction_of_max_step() -> None:
    policy = policy_with(adaptation={"smoothing": 1.0, "maxStep": 0.2})
    first = decide(policy=policy, backends=sample_fleet({"coder-7b": 3.0}), previous=None, now=T0)
    again = decide(
        policy=policy, backends=sample_fleet({"coder-7b": 3.0}), previous=first.state, now=T0 + 1.0
    )
    moved = first.weights["code-simple"]["coder-7b"] - again.weights["code-simple"]["coder-7b"]
    assert moved == pytest.approx(0.04)  # 1s of a 5s interval


def test_prometheus_outage_holds_then_falls_back_to_static_once() -> None:
    decisions = run(SAMPLE, [sample_fleet({"coder-7b": 1.5})] * 8)
    offloaded = decisions[-1]
    outage = run(SAMPLE, [no_data_fleet()] * 20, previous=offloaded.state, start=T0 + 8 * INTERVAL)
    held = outage[:12]  # last good reading at T0 + 35s; 60s later is outage[11]
    for d in held:
        assert d.weights == offloaded.weights
        assert not d.metrics_available and not d.stale
        assert d.offloading == offloaded.offloading
        assert d.reasons["code-simple"]["coder-7b"] == "held: metrics unavailable"
    assert outage[12].stale
    assert [e.reason for e in outage[12].events] == ["StaticFallback"]
    assert outage[12].events[0].warning and "staleAfter 60s" in outage[12].events[0].message
    assert outage[12].reasons["code-simple"]["coder-7b"] == "static: stale 65s > 60s"
    assert not any(e.reason == "StaticFallback" for d in outage[13:] for e in d.events)
    assert outage[-1].weights == static_weights(SAMPLE, sample_fleet())
    assert set(outage[-1].backend_states.values()) == {
        "Unknown"
    }  # held loads expire with the staleness limit
    # Measurements return: adaptation resumes from the static weights, at most max step at a time.
    back = decide(policy=SAMPLE, backends=sample_fleet(), previous=outage[-1].state, now=T0 + 28 * INTERVAL)
    assert back.metrics_available and not back.stale
    assert back.weights == outage[-1].weights


def test_nan_and_inf_are_errors_not_numbers() -> None:
    broken = {n: {"cpu": Reading(math.nan, "ok"), "kvCache": Reading(math.inf, "ok")} for n in SAMPLE_FLEET}
    first = run(SAMPLE, [sample_fleet()] * 3)[-1]
    d = decide(
        policy=SAMPLE, backends=sample_fleet(signals=broken), previous=first.state, now=T0 + 3 * INTERVAL
    )
    assert not d.metrics_available
    assert d.weights == first.weights
    assert all(math.isfinite(w) for c in d.weights.values() for w in c.values())


def test_one_backend_without_data_keeps_its_smoothed_load() -> None:
    decisions = run(SAMPLE, [sample_fleet({"coder-7b": 1.2})] * 6)
    d = decide(
        policy=SAMPLE,
        backends=sample_fleet({"coder-7b": None}),
        previous=decisions[-1].state,
        now=T0 + 6 * INTERVAL,
    )
    assert d.metrics_available
    assert d.loads["coder-7b"] == decisions[-1].loads["coder-7b"]
    assert d.offloading["code-simple"]


def test_a_backend_losing_all_endpoints_gives_its_share_away_at_once() -> None:
    steady = run(SAMPLE, [sample_fleet()] * 3)[-1]
    d = decide(
        policy=SAMPLE,
        backends=sample_fleet(ready={"general-4b": 0}),
        previous=steady.state,
        now=T0 + 3 * INTERVAL,
    )
    assert "general-4b" not in d.weights["chat-simple"]
    assert d.weights["summarize"] == {"large-14b": 1.0}
    assert sum(d.weights["chat-simple"].values()) == pytest.approx(1.0)
    assert d.reasons["chat-simple"]["general-4b"] == "unavailable: no ready endpoints"
    assert d.reasons["chat-simple"]["large-14b"] == "fallback: preferred unavailable"
    assert d.backend_states["general-4b"] == "Unavailable"
    # Nothing capable and reachable at all: the class is empty, never invalid.
    gone = decide(
        policy=SAMPLE, backends=sample_fleet(ready={"large-14b": 0}), previous=d.state, now=T0 + 4 * INTERVAL
    )
    assert gone.weights["reasoning"] == {}


def test_a_returning_backend_gets_only_the_floor_during_blackout() -> None:
    down = run(SAMPLE, [sample_fleet(ready={"general-4b": 0})] * 3)
    back_at = T0 + 3 * INTERVAL
    cycles = [sample_fleet(since={"general-4b": back_at})] * 8
    decisions = run(SAMPLE, cycles, previous=down[-1].state, start=back_at)
    assert decisions[0].weights["chat-simple"]["general-4b"] == 0.02
    assert decisions[1].weights["chat-simple"]["general-4b"] == 0.02  # 5s < 10s blackout
    assert decisions[0].reasons["chat-simple"]["general-4b"] == "blackout"
    assert decisions[2].weights["chat-simple"]["general-4b"] == pytest.approx(
        0.22
    )  # then one max step at a time
    assert decisions[-1].weights["chat-simple"] == static_weights(SAMPLE, sample_fleet())["chat-simple"]


def test_scaling_up_a_serving_backend_does_not_push_its_traffic_away() -> None:
    steady = run(SAMPLE, [sample_fleet()] * 3)[-1]
    now = T0 + 3 * INTERVAL
    d = decide(
        policy=SAMPLE,
        backends=sample_fleet(ready={"general-4b": 2}, since={"general-4b": now}),
        previous=steady.state,
        now=now,
    )
    assert d.weights["chat-simple"] == steady.weights["chat-simple"]


def test_restart_from_the_routing_table_continues_without_a_storm() -> None:
    policy = policy_with(adaptation={"smoothing": 1.0})
    decisions = run(policy, [sample_fleet({"coder-7b": 0.7})] * 2 + [sample_fleet({"coder-7b": 1.5})] * 8)
    live = decisions[-1]
    assert live.offloading["code-simple"]
    restored = ControllerState.from_table_weights(live.weights, T0 + 100.0)
    # The pool load is now in the band: a fresh start would not offload, a restored one keeps offloading.
    d = decide(policy=policy, backends=sample_fleet({"coder-7b": 0.7}), previous=restored, now=T0 + 100.0)
    assert d.offloading["code-simple"]
    assert not [e for e in d.events if e.reason.startswith("Offload")]
    for name, weights in live.weights.items():
        for backend, share in weights.items():
            assert abs(d.weights[name][backend] - share) <= policy.adaptation.max_step + ROUNDING
    # Prometheus down right after the restart: hold the table's weights for a full staleAfter.
    held = decide(policy=policy, backends=no_data_fleet(), previous=restored, now=T0 + 150.0)
    assert held.weights == live.weights and not held.stale


def test_controller_state_from_json_is_tolerant() -> None:
    assert ControllerState.from_json({}) == ControllerState()
    messy = {
        "weights": {"c": {"a": 0.5, "b": "x", "d": None}},
        "loads": [],
        "lastGoodAt": "soon",
        "stale": "yes",
    }
    assert ControllerState.from_json(messy) == ControllerState(weights={"c": {"a": 0.5}})


def test_rounding_sums_to_one_and_breaks_ties_by_name() -> None:
    three = one_class_policy(*SAMPLE_FLEET)
    weights = static_weights(three, sample_fleet())["chat"]
    assert weights == {
        "general-4b": 0.3333,
        "coder-7b": 0.3334,
        "large-14b": 0.3333,
    }  # equal remainders: by name


# --- rule 5b: a backend slowed by something other than its requests ------------------------------------------


def cotenant_fleet(
    *,
    chat_4b: float,
    running_4b: float = 2.0,
    coder_code: float = 9.0,
    coder_chat: float | None = 1.5,
    large_chat: float | None = 20.0,
) -> list[BackendInput]:
    """The sample fleet in the cotenant story: the 4B answers chat in ``chat_4b`` seconds (objective 4 s) with
    ``running_4b`` of its 32 slots busy; the coder is lightly used (4 of 16) but slow on code-complex
    (``coder_code`` s against 15 s, so its worst class latency looks busy), and answers chat in ``coder_chat``
    seconds; the 14B is busy (7 of 8 slots, reasoning in 35 s against 30 s, chat in ``large_chat`` seconds)."""
    fleet = {b.name: b for b in sample_fleet()}
    running = {"general-4b": running_4b, "coder-7b": 4.0, "large-14b": 7.0}
    latency = {
        "general-4b": {"chat-simple": chat_4b},
        "coder-7b": {"code-complex": coder_code, **({"chat-simple": coder_chat} if coder_chat else {})},
        "large-14b": {"reasoning": 35.0, **({"chat-simple": large_chat} if large_chat else {})},
    }
    return [
        replace(
            b,
            signals={"running": Reading(running[n], "ok")},
            latency={c: Reading(v, "ok") for c, v in latency[n].items()},
        )
        for n, b in fleet.items()
    ]


def test_a_backend_slowed_by_a_cotenant_sheds_to_a_fallback_that_answers_the_class_in_time() -> None:
    """The 4B answers chat in 6 s (load 1.5) with few requests in flight: something else slows it. The coder
    looks busy by its worst class (code-complex in 13.5 s against 15 s: 0.9, above the high watermark) but
    answers chat in 1.5 s: chat moves there. Summaries have only the busy 14B to go to: they stay."""
    decisions = run(SAMPLE, [cotenant_fleet(chat_4b=6.0, coder_code=13.5)] * 20)
    assert "general-4b" in decisions[-1].state.slowed
    chat = decisions[-1].weights["chat-simple"]
    assert chat["coder-7b"] > 0.6 and chat["general-4b"] < 0.3
    assert chat["large-14b"] < 0.1
    assert decisions[-1].weights["summarize"] == decisions[0].weights["summarize"]


def test_without_rule_5b_the_same_readings_would_hold_the_weights() -> None:
    """The same fleet whose 4B is slow because it is full (every slot running): shedding to fallbacks that
    look as busy would only move the queue, so the weights hold (the rule before 5b)."""
    decisions = run(SAMPLE, [cotenant_fleet(chat_4b=6.0, running_4b=32.0, coder_code=13.5)] * 20)
    assert "general-4b" not in decisions[-1].state.slowed
    assert decisions[-1].weights["chat-simple"] == decisions[0].weights["chat-simple"]


def test_a_full_preferred_backend_sheds_to_a_fallback_that_answers_the_class_in_time() -> None:
    """Rule 5, each fallback judged as the class sees it: the 4B is full with its own requests (every slot
    running: not slowed, rule 5b does not apply) and answers chat in 6 s against 4 s. The coder's worst class
    is slow (code-complex in 20 s against 15 s: 1.33) and so is the 14B's (reasoning, 1.17), so by their
    worst classes the fallbacks look as busy as the 4B and the weights would hold. But the coder answers chat
    in 1.5 s with 4 of 16 slots busy (0.375 for chat), and the 14B has 7 of 8 busy (0.875): chat spills, to
    the coder. Summaries have only the 14B, which as summaries see it is above the high watermark: they stay."""
    fleet = cotenant_fleet(chat_4b=6.0, running_4b=32.0, coder_code=20.0, large_chat=None)
    decisions = run(SAMPLE, [fleet] * 20)
    assert "general-4b" not in decisions[-1].state.slowed
    assert decisions[-1].offloading["chat-simple"]
    chat = decisions[-1].weights["chat-simple"]
    assert chat["coder-7b"] > 0.5 and chat["general-4b"] < 0.5
    assert chat["coder-7b"] > 2 * chat["large-14b"]
    assert decisions[-1].weights["summarize"] == decisions[0].weights["summarize"]


def test_a_full_preferred_backend_keeps_the_class_when_no_fallback_answers_it_better() -> None:
    """The same fleet, but the coder answers chat in 5 s too (1.25 for chat): the fallbacks, as chat sees
    them, are as busy as the 4B (mean 1.125 above the high watermark), so spilling would only move the queue."""
    fleet = cotenant_fleet(chat_4b=6.0, running_4b=32.0, coder_code=20.0, coder_chat=5.0, large_chat=None)
    decisions = run(SAMPLE, [fleet] * 20)
    assert decisions[-1].offloading["chat-simple"]
    assert decisions[-1].weights["chat-simple"] == decisions[0].weights["chat-simple"]


def test_the_class_view_of_a_fallback_is_smoothed_like_its_load() -> None:
    """Rule 4 for the class views: one cycle in which the coder answers chat in 1.5 s does not, by itself,
    make it a fallback for chat after cycles in which it answered in 8 s."""
    slow = cotenant_fleet(chat_4b=6.0, running_4b=32.0, coder_code=20.0, coder_chat=8.0, large_chat=None)
    fast = cotenant_fleet(chat_4b=6.0, running_4b=32.0, coder_code=20.0, large_chat=None)
    decisions = run(SAMPLE, [slow] * 10 + [fast])
    seen = decisions[-1].state.class_loads["chat-simple"]["coder-7b"]
    alpha = SAMPLE.adaptation.smoothing
    assert seen == pytest.approx(alpha * 1.5 / 4.0 + (1 - alpha) * 8.0 / 4.0)
    assert decisions[-1].weights["chat-simple"] == decisions[0].weights["chat-simple"]
    # Kept up, the coder's fast answers win it the spill (the test above).
    assert run(SAMPLE, [slow] * 10 + [fast] * 20)[-1].weights["chat-simple"]["coder-7b"] > 0.5


def test_a_slowed_backend_gets_its_share_back_once_it_recovers() -> None:
    slowed = [cotenant_fleet(chat_4b=6.0, coder_code=13.5)] * 20
    # Load 0.75: inside the band, so the state holds (hysteresis) and so do the weights.
    in_band = [cotenant_fleet(chat_4b=3.0, coder_code=13.5)] * 5
    recovered = [cotenant_fleet(chat_4b=0.8, coder_code=13.5)] * 40
    decisions = run(SAMPLE, slowed + in_band + recovered)
    assert decisions[19].weights["chat-simple"]["general-4b"] < 0.1
    # Nothing is given back in the band (the share keeps the controller's lower bound, MIN_MULTIPLIER).
    assert all("general-4b" in d.state.slowed for d in decisions[20:25])
    assert all(d.weights["chat-simple"]["general-4b"] < 0.1 for d in decisions[20:25])
    assert "general-4b" not in decisions[-1].state.slowed
    assert decisions[-1].weights["chat-simple"] == static_weights(SAMPLE, sample_fleet())["chat-simple"]
    assert not decisions[-1].offloading["chat-simple"]


def test_a_slowed_backend_never_sheds_to_fallbacks_that_serve_the_class_no_better() -> None:
    """The coder answers chat in 5 s too (load 1.25, above the high watermark): no fallback would do better."""
    decisions = run(SAMPLE, [cotenant_fleet(chat_4b=6.0, coder_chat=5.0)] * 20)
    assert decisions[-1].weights["chat-simple"] == decisions[0].weights["chat-simple"]

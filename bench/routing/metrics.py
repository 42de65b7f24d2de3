"""The numbers the issue asks for, computed the same way for both modes from `RunResult`s."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from zeta_operator.api.policy import TaskClass

from .records import RequestRecord, RunResult
from .scenario import BackendGroup, Scenario, external_busy, oracle

STABLE_STD = 0.05
"""Weight standard deviation under steady load above which we call it oscillation."""
MOVED = 0.05
"""A weight change this large counts as 'the weights moved'."""


@dataclass
class Summary:
    strategy: str
    offered: float
    """Requests per second sent."""
    goodput: float
    """Requests per second completed within their class objective."""
    slo: float
    """Fraction of all requests completed within objective."""
    rejected: int
    errors: int
    violations: int
    """True capability violations: answered by a backend below the prompt's true complexity or without its
    true task type."""
    violation_causes: dict[str, int] = field(default_factory=dict)
    """The true capability violations by cause (`violation_cause`), every cause present (0 when none)."""
    quality_goodput: float = 0.0
    """Sum of answer quality over the requests completed within objective, per second."""
    cost_per_good: float = math.nan
    """Total ``spec.cost`` of every answered request over the number completed within objective."""
    misrouted: int = 0
    """Requests the router's classifier put in another class than their true one."""
    down_spilled: int = 0
    """True complex requests (complexity >= 3) classified into a simple class (max complexity <= 2)."""
    per_class: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    """class -> (p50, p95, p99, SLO attainment); latencies of answered requests."""
    reaction: float | None = None
    """Seconds from the event (burst or fault) until weights moved (Zeta) and every class with capacity had its
    p95 back under objective; inf when it never did; None when the scenario has no event."""
    weights_moved: float | None = None
    stability: float | None = None
    """Largest standard deviation of one weight under steady load (Zeta; None otherwise)."""
    table_changes: int = 0


def _q(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def good(r: RequestRecord, sc: Scenario) -> bool:
    return r.status == "ok" and r.latency <= sc.objective(r.task_class)


def summarize(sc: Scenario, run: RunResult) -> Summary:
    recs = run.records
    n_good = sum(1 for r in recs if good(r, sc))
    s = Summary(
        strategy=run.strategy,
        offered=len(recs) / sc.duration,
        goodput=n_good / sc.duration,
        slo=n_good / len(recs) if recs else math.nan,
        rejected=sum(1 for r in recs if r.status == "rejected"),
        errors=sum(1 for r in recs if r.status == "error"),
        violations=run.violations,
        quality_goodput=sum(r.quality for r in recs if good(r, sc)) / sc.duration,
        cost_per_good=sum(r.cost for r in recs if r.status == "ok") / n_good if n_good else math.nan,
        misrouted=sum(1 for r in recs if r.routed_class and r.routed_class != r.task_class),
        down_spilled=sum(1 for r in recs if r.complexity >= 3 and r.routed_class in _simple_classes(sc)),
        violation_causes=violation_causes(sc, recs),
    )
    for c in sc.classes:
        mine = [r for r in recs if r.task_class == c.name]
        lat = [r.latency for r in mine if r.status == "ok"]
        attained = sum(1 for r in mine if good(r, sc)) / len(mine) if mine else math.nan
        s.per_class[c.name] = (_q(lat, 0.5), _q(lat, 0.95), _q(lat, 0.99), attained)
    s.table_changes = max(0, len(run.weights) - 1)
    event = event_window(sc)
    if event is not None:
        s.reaction, s.weights_moved = reaction(sc, run, *event)
    elif run.weights:
        s.stability = stability(sc, run)
    return s


CAUSES = {
    "class": "the class's own backends",
    "task": "a fallback without the task type",
    "spilled": "spilled below the class",
    "complexity": "a fallback below the complexity",
    "unknown": "class unknown",
}
"""Why a request was answered by a backend not capable of its true labels, from the record alone (so both
modes and every strategy are judged alike), first that applies:

- ``class``: the backend is one of the *classified* class's preferred backends: the classifier put the
  request into a class whose own backends cannot serve it (a confident mistake no router setting undoes
  except by leaving the class's own backends);
- ``spilled``: the backend's ceiling is below the classified class's (or its preferred backends') and below
  the true complexity: the spill gate (`spec.classifier.offloadConfidence`) let it down;
- ``task``: another backend of the class (an offload, overflow or last resort) that lacks the true task type
  (what `spec.classifier.taskConfidence` is for);
- ``complexity``: another backend that serves the true task type below its complexity (the classified
  complexity, or the class's range, is lower than the true one);
- ``unknown``: the record does not say which class the request was routed as."""


def violation_causes(sc: Scenario, recs: Sequence[RequestRecord]) -> dict[str, int]:
    counts = dict.fromkeys(CAUSES, 0)
    classes = {c.name: c for c in sc.policy.classes}
    groups = sc.backends()
    for r in recs:
        group = groups.get(r.backend) if r.status == "ok" else None
        if group is None or (r.task in group.tasks and r.complexity <= group.max_complexity):
            continue
        task_class = classes.get(r.routed_class)
        if task_class is None:
            counts["unknown"] += 1
        elif r.backend in task_class.preferred:
            counts["class"] += 1
        elif (
            group.max_complexity < _protected_ceiling(task_class, groups)
            and r.complexity > group.max_complexity
        ):
            counts["spilled"] += 1
        elif r.task not in group.tasks:
            counts["task"] += 1
        else:
            counts["complexity"] += 1
    return counts


def _protected_ceiling(task_class: TaskClass, groups: Mapping[str, BackendGroup]) -> int:
    """`balancer.ClassRoute.protected_ceiling` for the policy's class: below it a backend is a spill down."""
    preferred = [groups[b].max_complexity for b in task_class.preferred if b in groups]
    return max(task_class.complexity.max, min(preferred, default=0))


def _simple_classes(sc: Scenario) -> set[str]:
    return {c.name for c in sc.policy.classes if c.complexity.max <= 2}


def event_window(sc: Scenario) -> tuple[float, float, set[str]] | None:
    """(start, end, affected classes) of the scenario's first burst or fault; None for steady scenarios."""
    if sc.bursts:
        b = sc.bursts[0]
        return b.start, b.start + b.duration, {b.task_class}
    if sc.externals:
        x = sc.externals[0]
        affected = {c.name for c in sc.policy.classes if x.backend in c.preferred}
        return x.start, min(sc.duration, x.start + x.duration), affected
    if sc.faults:
        f = sc.faults[0]
        end = min(sc.duration, f.start + f.duration)
        affected = {c.name for c in sc.policy.classes if f.backend in c.preferred}
        return f.start, end, affected
    return None


def classes_with_capacity(sc: Scenario, start: float, end: float) -> set[str]:
    """Classes the oracle can serve entirely during the event (the others cannot meet their objective)."""
    mid = (start + end) / 2
    rates = {c.name: sc.class_rate(c.name, mid) for c in sc.classes}
    extra = {f.backend: f.extra_latency_ms / 1000 for f in sc.faults if not f.crash and f.active(mid)}
    down = {f.backend: 1 for f in sc.faults if f.crash and mid >= f.start}
    split = oracle(sc, rates, extra_latency=extra, down=down, busy=external_busy(sc, mid))
    return {c for c, r in rates.items() if r <= 0 or split.served[c] >= 0.99 * r}


def reaction(
    sc: Scenario, run: RunResult, start: float, end: float, affected: set[str]
) -> tuple[float, float | None]:
    """(reaction seconds, seconds until the weights moved) for the event in [start, end)."""
    moved: float | None = None
    if run.weights:
        before = next((w for t, w in reversed(run.weights) if t <= start), run.weights[0][1])
        for t, w in run.weights:
            if t < start:
                continue
            if any(
                abs(w.get(c, {}).get(b, 0.0) - before.get(c, {}).get(b, 0.0)) > MOVED
                for c in affected
                for b in set(w.get(c, {})) | set(before.get(c, {}))
            ):
                moved = t - start
                break
    # Recovered at the first control-interval boundary from which, over the rest of the event, the p95 of every
    # class with capacity (requests sent from then on; a rejected or failed one counts as too slow) is within
    # its objective.
    considered = classes_with_capacity(sc, start, end)
    by_class = {
        c: [r for r in run.records if r.task_class == c and start <= r.sent_at < end] for c in considered
    }
    t = start
    while t < end:
        ok = True
        for c, recs in by_class.items():
            lat = [r.latency if r.status == "ok" else math.inf for r in recs if r.sent_at >= t]
            if len(lat) >= 5 and _q(lat, 0.95) > sc.objective(c):
                ok = False
                break
        if ok:
            latency_ok = t - start
            return (max(latency_ok, moved) if moved is not None else latency_ok), moved
        t += sc.interval
    return math.inf, moved


def stability(sc: Scenario, run: RunResult) -> float:
    """Largest standard deviation of one (class, backend) weight, sampled every second over the second half of
    the steady period (the first half is the controller's transient from the static preferences)."""
    begin = (sc.steady_after + sc.duration) / 2
    grid = [begin + i for i in range(int(sc.duration - begin))]
    series: dict[tuple[str, str], list[float]] = {}
    j = 0
    current = run.weights[0][1]
    for t in grid:
        while j < len(run.weights) and run.weights[j][0] <= t:
            current = run.weights[j][1]
            j += 1
        for c, ws in current.items():
            for b, w in ws.items():
                series.setdefault((c, b), []).append(w)
    return max((statistics.pstdev(v) for v in series.values() if len(v) > 1), default=0.0)

"""The demo's workload: a realistic mix of task classes with a burst of simple code requests in the middle.

Open loop (Poisson arrivals per class), so a slow backend does not slow the offered load, exactly as real
clients do not wait for each other. Every request says its task type and complexity in headers, so the
scenario is the same on every run; the router's classifier is tested on its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ClassLoad:
    task_class: str
    task: str
    complexity: int
    rate: float  # requests per second outside the burst
    max_tokens: int
    prompt: str


@dataclass(frozen=True)
class Scenario:
    warmup: float  # seconds of steady load before the burst
    burst: float  # shortest burst, seconds
    cooldown: float  # shortest steady load after it, seconds
    burst_class: str
    burst_factor: float
    classes: tuple[ClassLoad, ...]
    hold: float = 15.0
    """The burst goes on until the burst class has been offloaded for this long (and `burst` has passed)."""
    patience: float = 300.0
    """How much longer than `burst` (or `cooldown`) a phase may wait for its condition: a slow machine makes
    the demo longer, not wrong."""

    def rate(self, load: ClassLoad, phase: str) -> float:
        in_burst = phase == "burst" and load.task_class == self.burst_class
        return load.rate * (self.burst_factor if in_burst else 1.0)

    def peak(self, load: ClassLoad) -> float:
        return load.rate * (self.burst_factor if load.task_class == self.burst_class else 1.0)


class Phases:
    """The scenario's phases as they unfold: before (``warmup`` seconds), burst (at least ``burst`` seconds,
    and until the operator has offloaded the burst class for ``hold`` seconds), after (at least ``cooldown``
    seconds, and until the preferred backend has its share back), then done. The conditions are read from the
    live system, so the story is the same on a fast machine and a slow one; only its length changes."""

    def __init__(
        self, plan: Scenario, *, offloading: Callable[[], bool], recovered: Callable[[], bool]
    ) -> None:
        self.plan = plan
        self._offloading, self._recovered = offloading, recovered
        self.current = "before"
        self.burst_started: float | None = None
        self.offload_seen: float | None = None
        """Seconds into the workload when offloading was first seen during the burst (None: never)."""
        self.after_started: float | None = None

    def at(self, t: float) -> str:
        """The phase at ``t`` seconds into the workload (``t`` never goes back)."""
        plan = self.plan
        if self.current == "before" and t >= plan.warmup:
            self.current, self.burst_started = "burst", t
        if self.current == "burst":
            assert self.burst_started is not None
            if self.offload_seen is None and self._offloading():
                self.offload_seen = t
            held = self.offload_seen is not None and t - self.offload_seen >= plan.hold
            elapsed = t - self.burst_started
            if (elapsed >= plan.burst and held) or elapsed >= plan.burst + plan.patience:
                self.current, self.after_started = "after", t
        if self.current == "after":
            assert self.after_started is not None
            elapsed = t - self.after_started
            if (elapsed >= plan.cooldown and self._recovered()) or elapsed >= plan.cooldown + plan.patience:
                self.current = "done"
        return self.current


def arrivals(plan: Scenario, phases: Phases, seed: int) -> Iterator[tuple[float, ClassLoad, str]]:
    """(time, class, phase) of every request, in time order, until the phases are done: a Poisson process per
    class at its peak rate, thinned to the rate of the phase each arrival falls in."""
    rng = random.Random(seed)
    upcoming = [(rng.expovariate(plan.peak(load)), i) for i, load in enumerate(plan.classes)]
    while True:
        t, i = min(upcoming)
        phase = phases.at(t)
        if phase == "done":
            return
        load = plan.classes[i]
        if rng.random() < plan.rate(load, phase) / plan.peak(load):
            yield t, load, phase
        upcoming[i] = (t + rng.expovariate(plan.peak(load)), i)


CODE = "Fix this function:\n```python\ndef add(a, b):\n    return a - b\n```"
MIX = (
    ClassLoad("chat-simple", "chat", 1, 1.2, 60, "Say hello to the team in one friendly sentence."),
    ClassLoad("summarize", "summarize", 2, 0.3, 80, "Summarize: " + "The meeting covered budgets. " * 20),
    ClassLoad("code-simple", "code", 2, 0.8, 120, CODE),
    ClassLoad("code-complex", "code", 4, 0.2, 200, "Refactor this module into classes with tests:\n" + CODE),
    ClassLoad(
        "reasoning", "reasoning", 5, 0.1, 200, "Prove step by step that the square root of 2 is irrational."
    ),
)


def full() -> Scenario:
    return Scenario(
        warmup=40, burst=60, cooldown=60, burst_class="code-simple", burst_factor=6.0, classes=MIX
    )


def quick() -> Scenario:
    """Test-sized: the same story in about a minute and a half (longer only if the machine is slow; the patience
    keeps the worst case inside the test's time limit). The burst and cooldown end on their conditions (offloaded
    for ``hold``, the share back), so their minimums are short; the warm-up is not: a shorter one starts the
    burst before the operator has settled on the fresh engines (a 10 s warm-up once delayed the reaction to 71 s)."""
    return Scenario(
        warmup=15,
        burst=20,
        cooldown=25,
        burst_class="code-simple",
        burst_factor=6.0,
        classes=MIX,
        patience=180.0,
    )

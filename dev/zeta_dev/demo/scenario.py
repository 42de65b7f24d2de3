"""The demo's workload: a realistic mix of task classes with a burst of simple code requests in the middle.

Open loop (Poisson arrivals per class), so a slow backend does not slow the offered load, exactly as real
clients do not wait for each other. Every request says its task type and complexity in headers, so the
scenario is the same on every run; the router's classifier is tested on its own.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
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
    burst: float  # seconds of burst
    cooldown: float  # seconds of steady load after it
    burst_class: str
    burst_factor: float
    classes: tuple[ClassLoad, ...]

    @property
    def duration(self) -> float:
        return self.warmup + self.burst + self.cooldown

    def phase(self, t: float) -> str:
        if t < self.warmup:
            return "before"
        return "burst" if t < self.warmup + self.burst else "after"

    def rate(self, load: ClassLoad, t: float) -> float:
        in_burst = self.phase(t) == "burst" and load.task_class == self.burst_class
        return load.rate * (self.burst_factor if in_burst else 1.0)

    def arrivals(self, seed: int) -> Iterator[tuple[float, ClassLoad]]:
        """(time, class) of every request, in time order (thinning of a Poisson process per class)."""
        rng = random.Random(seed)
        events: list[tuple[float, int, ClassLoad]] = []
        for i, load in enumerate(self.classes):
            peak = load.rate * (self.burst_factor if load.task_class == self.burst_class else 1.0)
            t = 0.0
            while True:
                t += rng.expovariate(peak)
                if t >= self.duration:
                    break
                if rng.random() < self.rate(load, t) / peak:
                    events.append((t, i, load))
        for t, _, load in sorted(events, key=lambda e: (e[0], e[1])):
            yield t, load


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
    """Test-sized: the same story in under two minutes."""
    return Scenario(
        warmup=15, burst=30, cooldown=40, burst_class="code-simple", burst_factor=6.0, classes=MIX
    )

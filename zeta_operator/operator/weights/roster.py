"""Rule 1: a class's candidates. Capability is a filter, never a weight; complex work is never downgraded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ...api.policy import TaskClass
from .model import BackendInput, _Knobs


def capable(backend: BackendInput, task_class: TaskClass) -> bool:
    """The backend serves the class's task type up to the class's highest complexity (a filter, no weight)."""
    return task_class.task_type in backend.tasks and backend.max_complexity >= task_class.complexity.max


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

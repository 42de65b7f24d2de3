"""Kubernetes-style conditions whose lastTransitionTime moves only when the status really changes."""

from __future__ import annotations

from collections.abc import Iterable

from ..api.common import Condition

TYPES = ("Ready", "MetricsAvailable", "Degraded", "InvalidSpec")


def merge(previous: Iterable[Condition], updates: Iterable[Condition]) -> list[Condition]:
    """New conditions, keeping each previous lastTransitionTime where the status did not change."""
    old = {c.type: c for c in previous}
    merged = {c.type: c for c in previous}
    for c in updates:
        before = old.get(c.type)
        if before is not None and before.status == c.status:
            c = c.model_copy(update={"last_transition_time": before.last_transition_time})
        merged[c.type] = c
    order = {t: i for i, t in enumerate(TYPES)}
    return sorted(merged.values(), key=lambda c: (order.get(c.type, len(order)), c.type))


def condition(
    kind: str, ok: bool, reason: str, message: str, *, now: str, generation: int | None
) -> Condition:
    return Condition(
        type=kind,
        status="True" if ok else "False",
        reason=reason,
        message=message[:4096],
        last_transition_time=now,
        observed_generation=generation,
    )

"""Rules 8-9: damping (hysteresis dead band, at most ``maxStep`` per interval) and rounding to the weight grid."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

from .control import _scaled
from .model import _EPS, _UNITS, BackendInput


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


def _floor_for(floor: float, candidates: Sequence[str], by_name: Mapping[str, BackendInput]) -> float:
    """The floor every candidate can actually get: at most an equal share, and the ModelBackends serving one
    model share one floor, so the class's floors do not grow with the number of replicas of a model (rule 5)."""
    if not candidates:
        return floor
    replicas = Counter(by_name[n].model or f"backend:{n}" for n in candidates)
    return min(floor / max(replicas.values()), 1.0 / len(candidates))


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

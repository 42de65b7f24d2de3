"""Rules 5-7: target shares by integral control, offload with hysteresis around the watermarks, blackout."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .model import _EPS, _UNITS, BackendInput, ControllerState, _Knobs
from .roster import _Roster

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
    class_loads: Mapping[str, float],
    slowed: frozenset[str] = frozenset(),
) -> tuple[dict[str, float], bool]:
    """Rule 5: integral control of the shares, with the previous weights as the controller's state.

    Also says whether the controller acted (some load outside the band), which exempts the move from the
    weight deadband (rule 8). ``class_loads`` is this class's smoothed view of each of its fallbacks (rule 5:
    fallbacks are judged by it where known); ``slowed`` serves rule 5b.
    """
    endpoints = {n: float(by_name[n].ready_endpoints) for n in roster.candidates}
    slots = {n: float(by_name[n].ready_endpoints * by_name[n].max_concurrency) for n in roster.candidates}
    acting = False

    def group(
        names: Sequence[str], base: Mapping[str, float], seen: Mapping[str, float | None] = loads
    ) -> dict[str, float]:
        nonlocal acting
        aim = max(knobs.setpoint, _pool_load(names, set(), by_name, seen) or 0.0)
        # An unmeasured carrier drifts back to its static share: "could not measure" is not "measured bad".
        factors = {n: _UNMEASURED if seen.get(n) is None else _factor(seen.get(n), knobs, aim) for n in names}
        acting = acting or any(f != 1.0 for f in factors.values())
        m = _multipliers(names, base, factors, previous, floor)
        return {n: base[n] * m[n] for n in names}

    fallback_view = _as_class_sees(roster, loads, class_loads)
    if not roster.preferred:
        return _floor_plus(roster.candidates, group(roster.fallbacks, slots, fallback_view), floor), acting
    if not (offloading and roster.fallbacks):
        return _floor_plus(roster.candidates, group(roster.preferred, endpoints), floor), acting
    lowest, highest = floor * len(roster.preferred), 1.0 - floor * len(roster.fallbacks)
    # A share of 0 could never grow back: the integral state has the same lower bound as a multiplier.
    share = max(_preferred_share(roster, previous, default=highest), MIN_MULTIPLIER * highest)
    if all(n in slowed for n in roster.preferred):
        factor = _slowed_factor(roster, by_name, fallback_view, pool, knobs)
    else:
        everyone = _pool_load(roster.candidates, set(), by_name, fallback_view, assumed=knobs.low) or 0.0
        factor = _factor(pool, knobs, max(knobs.setpoint, everyone))
        if factor < 1.0:
            room = _pool_load(roster.fallbacks, set(), by_name, fallback_view, assumed=knobs.low)
            if room is not None and pool is not None and room >= min(pool, knobs.high):
                factor = 1.0  # the fallbacks are as busy: spilling more would only move the queue
    acting = factor != 1.0
    share = min(highest, max(lowest, share * factor))
    mass = {
        **_scaled(group(roster.preferred, endpoints), share - lowest),
        **_scaled(group(roster.fallbacks, slots, fallback_view), 1.0 - share - floor * len(roster.fallbacks)),
    }
    return _floor_plus(roster.candidates, mass, floor), acting


def _as_class_sees(
    roster: _Roster, loads: Mapping[str, float | None], class_loads: Mapping[str, float]
) -> dict[str, float | None]:
    """The fallbacks judged by this class's view of them (`load.class_load`), where it is known."""
    return {**loads, **{n: class_loads[n] for n in roster.fallbacks if n in class_loads}}


def _slowed_factor(
    roster: _Roster,
    by_name: Mapping[str, BackendInput],
    seen: Mapping[str, float | None],
    pool: float | None,
    knobs: _Knobs,
) -> float:
    """Rule 5b: the preferred backends are slowed by something other than their requests, so shedding moves
    no queue, it only answers faster elsewhere. Their load is corrected towards the mean of themselves and the
    fallbacks that would serve this class better (load below the pool's and the high watermark); none such:
    no correction. Each fallback is judged as this class sees it: another class's slow answers there do not
    make it slow for this one."""
    if pool is None:
        return 1.0
    limit = min(pool, knobs.high)
    helpers = [n for n in roster.fallbacks if _or_low(seen.get(n), knobs) < limit]
    if not helpers:
        return 1.0
    everyone = _pool_load([*roster.preferred, *helpers], set(), by_name, seen, assumed=knobs.low) or 0.0
    return _factor(pool, knobs, max(knobs.setpoint, everyone))


def _or_low(load: float | None, knobs: _Knobs) -> float:
    """An unknown load counts as the low watermark, as `_pool_load` assumes it for fallbacks."""
    return knobs.low if load is None else load


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

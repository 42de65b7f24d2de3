"""Choosing a backend endpoint for one classified request: pure logic, no I/O, deterministic given the RNG.

1. **Capability filter.** A backend is eligible when it serves the class's task type (and every other task type
   the request plausibly is, when the classifier is unsure), its complexity ceiling is at least the request's
   complexity and its context window holds the estimated prompt. Nothing else can override this: capability is a
   filter, never a weight.
2. **The operator's weights, then the router's own view.** Among eligible backends with a weight above zero
   in the class, two are drawn with probability proportional to their weights; when they differ, the one whose
   least utilised endpoint with room (in-flight / max_concurrency) is less utilised wins, the first drawn on a
   tie. Idle, the split is the table's; under load, a backend the weights favour but that this router sees
   busier loses some of its draws to a less busy one the weights also name. Why: the weights are a control
   interval old and fleet-wide, the in-flight counts are this instant's; a backend slowed by a co-tenant or
   filled by a burst shows up here first. A backend the operator gave the floor is drawn rarely, so it still
   takes little (docs/benchmarks.md, "Two weighted draws").
3. **Within the backend.** An endpoint is picked by power of two choices on utilisation: two distinct endpoints
   with room are sampled and the less utilised one wins (ties: fewer in flight, then the first sampled). An
   endpoint at its max_concurrency is never chosen.
4. **Overflow.** When the drawn backend has no endpoint with room, the request goes to another weighted backend
   with room, drawn by weight among those (reason ``overflow``).
5. **Fallback.** When every weighted backend is full (or the class has no weighted backend left after the
   filter), eligible backends without weight are the last resort, picked by power of two choices on utilisation
   over all their endpoints (reason ``fallback``).
6. **None.** When every eligible endpoint is at capacity, the caller queues.

Reasons: ``preferred`` when the weighted draws picked a backend with the class's highest weight, ``offload`` when
they picked another weighted backend (the operator moved share there, or this router saw it less busy than the
one the weights favour), ``overflow`` and ``fallback`` as above.

Ejected endpoints (passive outlier detection) are skipped while any other eligible endpoint is not ejected,
so the last eligible endpoint is never taken out of service. ``exclude`` removes endpoints a retry already tried.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, Protocol

from ..api.table import TableBackend, TableClass, TableEndpoint

Reason = Literal["preferred", "offload", "overflow", "fallback"]


class LoadView(Protocol):
    """The router's local view of its endpoints (see `endpoints.EndpointTracker`)."""

    def inflight(self, url: str) -> int: ...

    def ejected(self, url: str) -> bool: ...


@dataclass(frozen=True, slots=True)
class Choice:
    backend: TableBackend
    endpoint: TableEndpoint
    reason: Reason


@dataclass(frozen=True, slots=True)
class ClassRoute:
    """A class's backends, split once per table: weighted (weight > 0) and capable-but-unweighted."""

    task_class: TableClass
    weighted: tuple[tuple[TableBackend, float], ...]
    unweighted: tuple[TableBackend, ...]
    top_weight: float
    protected_ceiling: int
    """A backend with a complexity ceiling below this is a spill *down*: the class's upper bound, or the
    lowest ceiling of its preferred backends when that is higher (`classify.spill_floor`)."""

    @classmethod
    def build(cls, task_class: TableClass, backends: Iterable[TableBackend]) -> ClassRoute:
        backends = list(backends)
        weighted: list[tuple[TableBackend, float]] = []
        unweighted: list[TableBackend] = []
        preferred = [b.max_complexity for b in backends if b.name in task_class.preferred]
        protected = max(task_class.complexity.max, min(preferred, default=0))
        for b in sorted(backends, key=lambda b: b.name):
            if task_class.task_type not in b.tasks:
                continue
            w = task_class.weights.get(b.name, 0.0)
            if w > 0:
                weighted.append((b, w))
            else:
                unweighted.append(b)
        top = max((w for _, w in weighted), default=0.0)
        return cls(task_class, tuple(weighted), tuple(unweighted), top, protected)

    def eligible(
        self, *, complexity: int, tokens: int, tasks: Iterable[str] = (), off_preferred: Iterable[str] = ()
    ) -> Eligible:
        """The capability filter for one request: ``tasks`` are task types every backend must serve besides
        the class's own (those the request may also be, `classify.plausible_tasks`), ``off_preferred`` those
        every backend but the class's preferred ones must serve (a class without preferred backends has no
        such others)."""
        also, elsewhere = frozenset(tasks), frozenset(off_preferred)
        preferred = self.task_class.preferred

        def fits(b: TableBackend) -> bool:
            return (
                b.max_complexity >= complexity
                and b.context_window >= tokens
                and also.issubset(b.tasks)
                and (not preferred or b.name in preferred or elsewhere.issubset(b.tasks))
            )

        return Eligible(
            weighted=tuple((b, w) for b, w in self.weighted if fits(b)),
            unweighted=tuple(b for b in self.unweighted if fits(b)),
            top_weight=self.top_weight,
        )

    def too_long(self, *, complexity: int, tokens: int) -> bool:
        """Some backend could serve this complexity, but none has the context window for the prompt."""
        backends = [b for b, _ in self.weighted] + list(self.unweighted)
        capable = [b for b in backends if b.max_complexity >= complexity]
        return bool(capable) and all(b.context_window < tokens for b in capable)


@dataclass(frozen=True, slots=True)
class Eligible:
    """The backends one request may use, after the capability filter."""

    weighted: tuple[tuple[TableBackend, float], ...]
    unweighted: tuple[TableBackend, ...]
    top_weight: float

    def __bool__(self) -> bool:
        return any(b.endpoints for b, _ in self.weighted) or any(b.endpoints for b in self.unweighted)

    def endpoint_urls(self) -> frozenset[str]:
        return frozenset(e.url for b in self.backends() for e in b.endpoints)

    def backends(self) -> list[TableBackend]:
        return [b for b, _ in self.weighted] + list(self.unweighted)

    def without(self, urls: frozenset[str]) -> Eligible:
        """The same backends without the endpoints in ``urls`` (those a retry has tried already)."""

        def rest(b: TableBackend) -> TableBackend:
            return b.model_copy(update={"endpoints": [e for e in b.endpoints if e.url not in urls]})

        return Eligible(
            weighted=tuple((rest(b), w) for b, w in self.weighted),
            unweighted=tuple(rest(b) for b in self.unweighted),
            top_weight=self.top_weight,
        )


def choose(
    eligible: Eligible,
    load: LoadView,
    rng: random.Random,
    *,
    exclude: frozenset[str] = frozenset(),
) -> Choice | None:
    """The endpoint for one request, or None when every eligible endpoint is at capacity."""
    usable = _usable_filter(eligible, load, exclude)
    weighted = [(b, w) for b, w in eligible.weighted if b.endpoints]
    if weighted:
        backend, room = _two_weighted_draws(weighted, load, rng, usable)
        endpoint = _pick_from_room(room, load, rng)
        if endpoint is not None:
            reason: Reason = "preferred" if _is_top(backend, eligible) else "offload"
            return Choice(backend, endpoint, reason)
        with_room = [(b, w) for b, w in weighted if b is not backend and _has_room(b.endpoints, load, usable)]
        if with_room:
            other = _weighted_draw(with_room, rng)
            endpoint = _pick_endpoint(other.endpoints, load, rng, usable)
            if endpoint is not None:
                return Choice(other, endpoint, "overflow")
    return _fallback(eligible.unweighted, load, rng, usable)


def utilisation(endpoint: TableEndpoint, load: LoadView) -> float:
    return load.inflight(endpoint.url) / endpoint.max_concurrency


def _is_top(backend: TableBackend, eligible: Eligible) -> bool:
    weight = next(w for b, w in eligible.weighted if b is backend)
    return weight >= eligible.top_weight - 1e-9


def _usable_filter(eligible: Eligible, load: LoadView, exclude: frozenset[str]) -> Callable[[str], bool]:
    """Skip excluded endpoints, and ejected ones unless every remaining eligible endpoint is ejected."""
    urls = [e.url for b in eligible.backends() for e in b.endpoints if e.url not in exclude]
    if any(not load.ejected(u) for u in urls):
        return lambda url: url not in exclude and not load.ejected(url)
    return lambda url: url not in exclude


def _weighted_draw(weighted: list[tuple[TableBackend, float]], rng: random.Random) -> TableBackend:
    total = sum(w for _, w in weighted)
    point = rng.random() * total
    for backend, w in weighted:
        point -= w
        if point < 0:
            return backend
    return weighted[-1][0]


def _two_weighted_draws(
    weighted: list[tuple[TableBackend, float]],
    load: LoadView,
    rng: random.Random,
    usable: Callable[[str], bool],
) -> tuple[TableBackend, list[TableEndpoint]]:
    """Two draws by weight; the second wins only if it differs and its least utilised endpoint with room is less
    utilised than the first's. Returns the winner and its endpoints with room (found once, picked from next)."""
    first, second = _weighted_draw(weighted, rng), _weighted_draw(weighted, rng)
    first_room = _room(first.endpoints, load, usable)
    if second is first:
        return first, first_room
    second_room = _room(second.endpoints, load, usable)
    if not second_room:
        return first, first_room
    if not first_room or _least_utilisation(second_room, load) < _least_utilisation(first_room, load):
        return second, second_room
    return first, first_room


def _least_utilisation(room: list[TableEndpoint], load: LoadView) -> float:
    return min(utilisation(e, load) for e in room)


def _room(
    endpoints: Iterable[TableEndpoint], load: LoadView, usable: Callable[[str], bool]
) -> list[TableEndpoint]:
    return [e for e in endpoints if usable(e.url) and load.inflight(e.url) < e.max_concurrency]


def _has_room(endpoints: Iterable[TableEndpoint], load: LoadView, usable: Callable[[str], bool]) -> bool:
    return any(usable(e.url) and load.inflight(e.url) < e.max_concurrency for e in endpoints)


def _pick_endpoint(
    endpoints: Iterable[TableEndpoint], load: LoadView, rng: random.Random, usable: Callable[[str], bool]
) -> TableEndpoint | None:
    """Power of two choices on utilisation among the endpoints with room."""
    return _pick_from_room(_room(endpoints, load, usable), load, rng)


def _pick_from_room(room: list[TableEndpoint], load: LoadView, rng: random.Random) -> TableEndpoint | None:
    """`_pick_endpoint` on endpoints already known to have room."""
    if len(room) <= 1:
        return room[0] if room else None
    first, second = rng.sample(room, 2)
    key_first = (utilisation(first, load), load.inflight(first.url))
    key_second = (utilisation(second, load), load.inflight(second.url))
    return second if key_second < key_first else first


def _fallback(
    backends: tuple[TableBackend, ...], load: LoadView, rng: random.Random, usable: Callable[[str], bool]
) -> Choice | None:
    owner = {e.url: b for b in backends for e in b.endpoints}
    endpoint = _pick_endpoint((e for b in backends for e in b.endpoints), load, rng, usable)
    if endpoint is None:
        return None
    return Choice(owner[endpoint.url], endpoint, "fallback")


# --- Benchmark baselines (``zeta-router --strategy``) ---------------------------------------------------------
#
# Not how Zeta routes: these exist so the routing benchmark (bench/bench_routing.py) can run the classic
# alternatives through the very same router. Both ignore the operator's weights and keep the capability filter,
# the endpoint capacity (an endpoint at max_concurrency is never chosen) and ejection. The default strategy,
# "weighted", is `choose` above; the router's settings name the strategy and `picker` turns it into the
# function admission calls.

Strategy = Literal["weighted", "round-robin", "least-request"]
STRATEGIES: tuple[Strategy, ...] = ("weighted", "round-robin", "least-request")

Picker = Callable[[Eligible, LoadView, random.Random, frozenset[str]], Choice | None]
"""Chooses the endpoint of one request: (eligible, load, rng, exclude) -> a choice, or None when full."""


def weighted(
    eligible: Eligible, load: LoadView, rng: random.Random, exclude: frozenset[str]
) -> Choice | None:
    """Zeta's routing (`choose`) as a `Picker`."""
    return choose(eligible, load, rng, exclude=exclude)


class RoundRobin:
    """Every capable endpoint in turn (per set of capable endpoints), skipping those without room."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, ...], int] = {}

    def __call__(
        self, eligible: Eligible, load: LoadView, rng: random.Random, exclude: frozenset[str]
    ) -> Choice | None:
        ring = _ring(eligible)
        if not ring:
            return None
        key = tuple(e.url for _, e in ring)
        usable = _usable_filter(eligible, load, exclude)
        start = self._next.get(key, 0)
        for i in range(len(ring)):
            backend, endpoint = ring[(start + i) % len(ring)]
            if usable(endpoint.url) and load.inflight(endpoint.url) < endpoint.max_concurrency:
                self._next[key] = (start + i + 1) % len(ring)
                return Choice(backend, endpoint, "fallback")
        return None


def least_request(
    eligible: Eligible, load: LoadView, rng: random.Random, exclude: frozenset[str]
) -> Choice | None:
    """The capable endpoint with the fewest requests in flight (ties drawn at random), if any has room."""
    usable = _usable_filter(eligible, load, exclude)
    best: list[tuple[TableBackend, TableEndpoint]] = []
    fewest = -1
    for backend, endpoint in _ring(eligible):
        n = load.inflight(endpoint.url)
        if not usable(endpoint.url) or n >= endpoint.max_concurrency:
            continue
        if fewest < 0 or n < fewest:
            best, fewest = [(backend, endpoint)], n
        elif n == fewest:
            best.append((backend, endpoint))
    if not best:
        return None
    backend, endpoint = best[0] if len(best) == 1 else rng.choice(best)
    return Choice(backend, endpoint, "fallback")


def picker(strategy: Strategy) -> Picker:
    """The picker of a strategy: `weighted` (Zeta's own `choose`) or a fresh baseline."""
    if strategy == "weighted":
        return weighted
    if strategy == "round-robin":
        return RoundRobin()
    if strategy == "least-request":
        return least_request
    raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


def _ring(eligible: Eligible) -> list[tuple[TableBackend, TableEndpoint]]:
    """Every capable endpoint, in backend-name then table order."""
    return [(b, e) for b in sorted(eligible.backends(), key=lambda b: b.name) for e in b.endpoints]

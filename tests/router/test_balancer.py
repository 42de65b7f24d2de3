"""The choice logic: capability filter, weights, power of two choices, overflow, fallback, ejection."""

from __future__ import annotations

import math
import random
from collections import Counter

from zeta_operator.api.table import RoutingTable
from zeta_operator.router.balancer import ClassRoute, Eligible, choose
from zeta_operator.router.endpoints import EndpointTracker
from zeta_operator.router.settings import Ejection

from .helpers import backend, table, task_class


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fleet() -> RoutingTable:
    """small: 2 endpoints, ceiling 2; coder: ceiling 4, code only; big: ceiling 5, 16k context."""
    return table(
        [
            backend(
                "small",
                ["http://s1:1", "http://s2:1"],
                tasks=["chat", "code"],
                max_complexity=2,
                max_concurrency=2,
            ),
            backend("coder", ["http://c1:1"], tasks=["code"], max_complexity=4, max_concurrency=2),
            backend(
                "big",
                ["http://b1:1"],
                tasks=["chat", "code"],
                max_complexity=5,
                max_concurrency=2,
                context_window=16384,
            ),
        ],
        [
            task_class("chat-simple", "chat", {"small": 0.8, "big": 0.2}, complexity=(1, 2)),
            task_class("chat-hard", "chat", {"big": 1.0}, complexity=(3, 5)),
            task_class("code", "code", {"coder": 0.6, "big": 0.4}, complexity=(1, 4)),
        ],
    )


def eligible(name: str, *, complexity: int = 1, tokens: int = 10, t: RoutingTable | None = None) -> Eligible:
    t = t or fleet()
    cls = next(c for c in t.classes if c.name == name)
    return ClassRoute.build(cls, t.backends).eligible(complexity=complexity, tokens=tokens)


def tracker(clock: Clock | None = None) -> EndpointTracker:
    return EndpointTracker(
        Ejection(consecutive_failures=2, base_seconds=5, max_seconds=20), clock=clock or Clock()
    )


def test_weighted_split_follows_the_table() -> None:
    """Idle (every utilisation alike), the two draws keep the first: the split is the table's."""
    load, rng = tracker(), random.Random(7)
    counts = Counter(choose(eligible("chat-simple"), load, rng).backend.name for _ in range(10_000))  # type: ignore[union-attr]
    sigma = math.sqrt(10_000 * 0.8 * 0.2)
    assert abs(counts["small"] - 8000) < 4 * sigma
    assert set(counts) == {"small", "big"}


def test_a_busier_weighted_backend_loses_draws_to_a_less_busy_one() -> None:
    """small (0.8) half full, big (0.2) idle: when the two draws differ (2 * 0.8 * 0.2 = 32%) big wins, so it
    takes 4% + 32% = 36% instead of its 20%. Busy both alike, the split is the table's again."""
    load, rng = tracker(), random.Random(5)
    for url in ("http://s1:1", "http://s2:1"):
        load.acquire(url)
    counts = Counter(choose(eligible("chat-simple"), load, rng).backend.name for _ in range(10_000))  # type: ignore[union-attr]
    sigma = math.sqrt(10_000 * 0.36 * 0.64)
    assert abs(counts["big"] - 3600) < 4 * sigma
    load.acquire("http://b1:1")
    counts = Counter(choose(eligible("chat-simple"), load, rng).backend.name for _ in range(10_000))  # type: ignore[union-attr]
    assert abs(counts["big"] - 2000) < 4 * math.sqrt(10_000 * 0.2 * 0.8)


def test_reasons_preferred_and_offload() -> None:
    load, rng = tracker(), random.Random(1)
    reasons = {
        c.backend.name: c.reason
        for c in (choose(eligible("chat-simple"), load, rng) for _ in range(200))
        if c
    }
    assert reasons == {"small": "preferred", "big": "offload"}


def test_capability_filter_is_never_overridden() -> None:
    load, rng = tracker(), random.Random(3)
    # chat at complexity 3+: only big, even with every other endpoint idle and big full.
    hard = eligible("chat-hard", complexity=4)
    assert [b.name for b in hard.backends()] == ["big"]
    for _ in range(2):
        load.acquire("http://b1:1")
    assert choose(hard, load, rng) is None  # full: the caller queues, never downgrades
    # code at complexity 3: small (ceiling 2) is out although the class is served by it at 1-2.
    assert {b.name for b in eligible("code", complexity=3).backends()} == {"coder", "big"}
    # a prompt longer than small's and coder's context window: only big (16k) remains.
    assert [b.name for b in eligible("code", complexity=1, tokens=12_000).backends()] == ["big"]


def test_capable_unweighted_backends_are_the_last_resort() -> None:
    load, rng = tracker(), random.Random(5)
    code = eligible("code", complexity=1)
    assert [b.name for b in code.unweighted] == ["small"]  # serves code, no weight in the class
    seen = Counter(choose(code, load, rng).backend.name for _ in range(300))  # type: ignore[union-attr]
    assert "small" not in seen
    for url in ("http://c1:1", "http://c1:1", "http://b1:1", "http://b1:1"):
        load.acquire(url)
    choice = choose(code, load, rng)
    assert choice is not None and (choice.backend.name, choice.reason) == ("small", "fallback")


def test_overflow_when_the_weighted_pick_is_full() -> None:
    load, rng = tracker(), random.Random(11)
    for url in ("http://s1:1", "http://s1:1", "http://s2:1", "http://s2:1"):
        load.acquire(url)
    choices = [choose(eligible("chat-simple"), load, rng) for _ in range(100)]
    reasons = Counter((c.backend.name, c.reason) for c in choices if c)
    # small is drawn 80% of the time and is full: those go to big as overflow; the rest are big's own share.
    assert set(reasons) == {("big", "overflow"), ("big", "offload")}


def test_never_an_endpoint_at_capacity_and_none_when_all_are_full() -> None:
    load, rng = tracker(), random.Random(2)
    picked = []
    while (c := choose(eligible("chat-simple"), load, rng)) is not None:
        assert load.inflight(c.endpoint.url) < c.endpoint.max_concurrency
        load.acquire(c.endpoint.url)
        picked.append(c.endpoint.url)
    assert Counter(picked) == {"http://s1:1": 2, "http://s2:1": 2, "http://b1:1": 2}


def test_power_of_two_choices_prefers_the_less_utilised_endpoint() -> None:
    load, rng = tracker(), random.Random(4)
    load.acquire("http://s1:1")
    t = table(
        [backend("small", ["http://s1:1", "http://s2:1"], max_complexity=2, max_concurrency=2)],
        [task_class("chat", "chat", {"small": 1.0}, complexity=(1, 2))],
    )
    for _ in range(50):
        choice = choose(eligible("chat", t=t), load, rng)
        assert choice is not None and choice.endpoint.url == "http://s2:1"


def test_deterministic_with_the_same_seed() -> None:
    def run(seed: int) -> list[str]:
        load, rng = tracker(), random.Random(seed)
        return [choose(eligible("chat-simple"), load, rng).endpoint.url for _ in range(100)]  # type: ignore[union-attr]

    assert run(42) == run(42)
    assert run(42) != run(43)


def test_ejected_endpoints_are_skipped_but_the_last_one_stays() -> None:
    clock = Clock()
    load, rng = tracker(clock), random.Random(9)
    peers = ["http://s1:1", "http://s2:1", "http://b1:1"]
    for _ in range(2):
        load.record_failure("http://s1:1", peers=peers)
    assert load.ejected("http://s1:1")
    urls = Counter(choose(eligible("chat-simple"), load, rng).endpoint.url for _ in range(200))  # type: ignore[union-attr]
    assert "http://s1:1" not in urls
    # the only endpoint of a class is never ejected...
    only = ["http://b1:1"]
    for _ in range(5):
        assert load.record_failure("http://b1:1", peers=only) == 0.0
    assert not load.ejected("http://b1:1")
    # ...and when every eligible endpoint is ejected anyway, ejection is ignored rather than serving nobody.
    for url in ("http://s2:1", "http://b1:1"):
        for _ in range(2):
            load.record_failure(url, peers=[*peers, "http://other:1"])
    assert all(load.ejected(u) for u in peers)
    assert choose(eligible("chat-simple"), load, rng) is not None


def test_ejection_time_doubles_is_capped_and_resets_on_success() -> None:
    clock = Clock()
    load = tracker(clock)
    peers = ["http://a:1", "http://b:1"]
    times = []
    for _ in range(4):
        load.record_failure("http://a:1", peers=peers)
        times.append(load.record_failure("http://a:1", peers=peers))
        clock.now += times[-1]
        assert not load.ejected("http://a:1")
    assert times == [5, 10, 20, 20]
    load.record_success("http://a:1")
    load.record_failure("http://a:1", peers=peers)
    assert load.record_failure("http://a:1", peers=peers) == 5


def test_retry_exclusion() -> None:
    load, rng = tracker(), random.Random(8)
    tried = frozenset({"http://s1:1", "http://s2:1"})
    for _ in range(50):
        choice = choose(eligible("chat-simple"), load, rng, exclude=tried)
        assert choice is not None and choice.endpoint.url == "http://b1:1"

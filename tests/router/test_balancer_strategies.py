"""The benchmark baselines behind ``zeta-router --strategy``: round robin and least-request over capable
endpoints. Both keep the capability filter, never pick an endpoint at capacity, and skip ejected ones; the
default ("weighted") path is `choose` unchanged."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from zeta_operator.router.__main__ import parse_args
from zeta_operator.router.admission import Admission
from zeta_operator.router.balancer import RoundRobin, least_request, picker, weighted
from zeta_operator.router.endpoints import EndpointTracker
from zeta_operator.router.metrics import RouterMetrics
from zeta_operator.router.settings import Ejection

from .test_balancer import Clock, eligible, tracker


def test_round_robin_takes_every_capable_endpoint_in_turn() -> None:
    rr, load, rng = RoundRobin(), tracker(), random.Random(1)
    e = eligible("chat-simple")  # small (2 endpoints) and big; coder serves no chat
    picks = [rr(e, load, rng, frozenset()) for _ in range(6)]
    urls = [p.endpoint.url for p in picks if p is not None]
    assert urls == ["http://b1:1", "http://s1:1", "http://s2:1"] * 2


def test_round_robin_skips_full_and_ejected_endpoints() -> None:
    clock = Clock()
    rr, load, rng = RoundRobin(), tracker(clock), random.Random(1)
    e = eligible("chat-simple")
    load.acquire("http://b1:1")
    load.acquire("http://b1:1")  # big at max_concurrency 2
    for _ in range(3):
        load.record_failure("http://s1:1", peers=e.endpoint_urls())  # ejected
    picks = {rr(e, load, rng, frozenset()).endpoint.url for _ in range(4)}  # type: ignore[union-attr]
    assert picks == {"http://s2:1"}


def test_round_robin_none_when_everything_is_full() -> None:
    rr, load = RoundRobin(), tracker()
    e = eligible("chat-hard", complexity=4)  # only big is capable
    load.acquire("http://b1:1")
    load.acquire("http://b1:1")
    assert rr(e, load, random.Random(1), frozenset()) is None


def test_least_request_picks_the_fewest_in_flight() -> None:
    load = tracker()
    e = eligible("code", complexity=2)  # small x2, coder, big
    for url in ("http://s1:1", "http://s2:1", "http://b1:1"):
        load.acquire(url)
    choice = least_request(e, load, random.Random(1), frozenset())
    assert choice is not None and choice.endpoint.url == "http://c1:1"


def test_least_request_draws_ties_at_random_and_respects_capability() -> None:
    load = tracker()
    e = eligible("code", complexity=4)  # small's ceiling is 2: only coder and big
    seen = Counter(least_request(e, load, random.Random(i), frozenset()).backend.name for i in range(200))  # type: ignore[union-attr]
    assert set(seen) == {"coder", "big"}
    assert min(seen.values()) > 50


def test_least_request_honours_exclude_and_capacity() -> None:
    load = tracker()
    e = eligible("chat-hard", complexity=4)
    assert least_request(e, load, random.Random(1), frozenset({"http://b1:1"})) is None
    load.acquire("http://b1:1")
    load.acquire("http://b1:1")
    assert least_request(e, load, random.Random(1), frozenset()) is None


def test_admission_uses_the_injected_picker() -> None:
    e = eligible("code", complexity=2)
    least = Admission(tracker(), RouterMetrics(), random.Random(1), pick=picker("least-request"))
    for url in ("http://s1:1", "http://s2:1", "http://b1:1"):
        least.tracker.acquire(url)
    choice = least.try_now(e)
    assert choice is not None and choice.endpoint.url == "http://c1:1"
    # Another admission in the same process keeps Zeta's weighted choice (nothing process-wide).
    default = Admission(EndpointTracker(Ejection()), RouterMetrics(), random.Random(1))
    assert default._pick is weighted


def test_picker_names() -> None:
    assert picker("weighted") is weighted
    assert isinstance(picker("round-robin"), RoundRobin)
    assert picker("least-request") is least_request
    with pytest.raises(ValueError, match="unknown strategy"):
        picker("random")  # type: ignore[arg-type]


def test_strategy_flag() -> None:
    settings, _ = parse_args(["--table-file", "/tmp/t.json"])
    assert settings.strategy == "weighted"
    settings, _ = parse_args(["--table-file", "/tmp/t.json", "--strategy", "least-request"])
    assert settings.strategy == "least-request"
    with pytest.raises(SystemExit):
        parse_args(["--table-file", "/tmp/t.json", "--strategy", "random"])

"""Continuous batching with made-up clocks: exact times, no sleeping."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from zeta_sim.latency import LatencyModel
from zeta_sim.scheduler import Scheduler, Sequence

MODEL = LatencyModel(ttft_base_s=0.1, prefill_per_token_s=0.0, tpot_s=0.01, batch_alpha=1.0, max_seqs=2)


def scheduler(
    *, time_scale: float = 1.0, stream_interval_s: float = 0.0, model: LatencyModel = MODEL
) -> Scheduler:
    return Scheduler(model, time_scale=time_scale, stream_interval_s=stream_interval_s)


def run(s: Scheduler, now: float, *, until: float = math.inf) -> float:
    """Advance from event to event, as the engine task does, until idle or ``until``; returns the time."""
    for _ in range(100_000):
        delay = s.next_event_in()
        if delay is None or now + delay > until:
            break
        now += delay
        s.advance(now)
    if until != math.inf:
        s.advance(until)
        now = until
    return now


def submit(
    s: Scheduler,
    now: float,
    output: int = 11,
    *,
    stream: bool = False,
    extra_s: float = 0.0,
    on_news: Callable[[], None] = lambda: None,
) -> Sequence:
    return s.submit(
        prompt_tokens=1, output_tokens=output, stream=stream, now=now, extra_s=extra_s, on_news=on_news
    )


def test_a_request_alone_takes_ttft_plus_a_tpot_per_further_token() -> None:
    s = scheduler()
    seq = submit(s, 0.0)
    assert s.next_event_in() == pytest.approx(0.2)
    run(s, 0.0)
    assert seq.first_token_at == pytest.approx(0.1)
    assert seq.finished_at == pytest.approx(0.2)
    assert seq.tokens_ready == 11
    assert (s.num_running, s.num_waiting) == (0, 0)


def test_time_scale_multiplies_every_delay() -> None:
    s = scheduler(time_scale=0.1)
    seq = submit(s, 5.0, extra_s=1.0)
    run(s, 5.0)
    assert seq.first_token_at == pytest.approx(5.0 + 0.1 * (1.0 + 0.1))
    assert seq.finished_at == pytest.approx(5.0 + 0.1 * (1.0 + 0.2))


def test_beyond_max_seqs_requests_wait_first_come_first_served() -> None:
    s = scheduler()
    a, b, c = (submit(s, 0.0) for _ in range(3))
    assert (s.num_running, s.num_waiting) == (2, 1)
    assert c.started_at is None
    run(s, 0.0)
    assert a.finished_at == pytest.approx(0.2 * 1.5)  # two share the batch: each 1.5x slower
    assert b.finished_at == pytest.approx(0.3)
    assert c.started_at == pytest.approx(0.3)
    assert c.finished_at == pytest.approx(0.3 + 0.2)  # alone again


def test_an_arrival_slows_the_others_only_from_when_it_arrives() -> None:
    s = scheduler()
    a = submit(s, 0.0)
    run(s, 0.0, until=0.1)  # a has its first token, 10 to go
    assert a.tokens_ready == 1
    b = submit(s, 0.1)
    run(s, 0.1)
    assert a.finished_at == pytest.approx(0.1 + 10 * 0.01 * 1.5)
    # b: prefill at 1.5x until a leaves at 0.25 (0.15 of 0.15 needed), then alone.
    assert b.first_token_at == pytest.approx(0.25)
    assert b.finished_at == pytest.approx(0.35)


def test_injected_latency_is_a_stall_that_batching_does_not_stretch() -> None:
    s = scheduler()
    a = submit(s, 0.0, extra_s=0.5)
    b = submit(s, 0.0)
    run(s, 0.0)
    assert b.first_token_at == pytest.approx(0.15)
    assert b.finished_at == pytest.approx(0.3)
    # a waited 0.5 regardless of b, then ran its prefill alone (b left at 0.3).
    assert a.first_token_at == pytest.approx(0.6)


def test_frozen_engine_makes_no_progress_and_starts_nothing() -> None:
    s = scheduler()
    a = submit(s, 0.0)
    s.freeze(now=0.05)
    b, c = submit(s, 1.0), submit(s, 1.0)
    assert s.next_event_in() is None
    s.advance(100.0)
    assert a.first_token_at is None and not a.done
    assert (s.num_running, s.num_waiting) == (1, 2)
    s.thaw(now=100.0)
    assert b.started_at == 100.0 and c.started_at is None
    run(s, 100.0)
    assert a.first_token_at == pytest.approx(100.0 + 0.05 * 1.5)  # the rest of its prefill, now shared
    assert all(x.done for x in (a, b, c))


def test_abort_frees_the_slot_and_leaves_the_queue() -> None:
    s = scheduler()
    a, b, c, d = (submit(s, 0.0) for _ in range(4))
    s.abort(c, now=0.01)
    assert (s.num_running, s.num_waiting) == (2, 1)
    s.abort(a, now=0.02)
    assert d.started_at == pytest.approx(0.02)
    assert (s.num_running, s.num_waiting) == (2, 0)
    run(s, 0.02)
    assert not a.done and not c.done and b.done and d.done
    assert s.tokens_in_flight == 0


def test_streams_are_told_in_groups_that_keep_to_the_stream_interval() -> None:
    s = scheduler(stream_interval_s=0.05)  # 10 ms per token: groups of 5
    seen: list[tuple[float, int]] = []
    clock = {"now": 0.0}
    seq = submit(
        s, 0.0, output=21, stream=True, on_news=lambda: seen.append((clock["now"], seq.tokens_ready))
    )
    now = 0.0
    while (delay := s.next_event_in()) is not None:
        now = clock["now"] = now + delay
        s.advance(now)
    assert [n for _, n in seen] == [1, 6, 11, 16, 21]
    assert [t for t, _ in seen] == pytest.approx([0.1, 0.15, 0.2, 0.25, 0.3])


def test_kv_cache_holds_prompt_and_generated_tokens_of_running_sequences() -> None:
    s = scheduler()
    s.submit(prompt_tokens=100, output_tokens=11, stream=False, now=0.0)
    run(s, 0.0, until=0.15)  # first token at 0.1, five more by 0.15
    assert s.tokens_in_flight == 100 + 6


@settings(max_examples=60, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(st.floats(0, 2), st.integers(1, 40), st.integers(1, 500), st.booleans()),
        min_size=1,
        max_size=25,
    ),
    max_seqs=st.integers(1, 6),
    alpha=st.floats(0, 2),
)
# Found by this test: an arrival grew the batch, which shrank the stream group so a group became due at that
# very instant; advance() skipped zero-length steps, so next_event_in() said 0 forever (a spin).
@example(
    arrivals=[(0.771495239597904, 27, 385, True), (1.0358868924299187, 37, 136, True)],
    max_seqs=2,
    alpha=1.9553564903309208,
)
def test_every_request_finishes_no_faster_than_alone_and_starts_in_arrival_order(
    arrivals: list[tuple[float, int, int, bool]], max_seqs: int, alpha: float
) -> None:
    model = LatencyModel(
        ttft_base_s=0.02, prefill_per_token_s=1e-4, tpot_s=0.01, batch_alpha=alpha, max_seqs=max_seqs
    )
    s = scheduler(model=model, stream_interval_s=0.03)
    seqs: list[Sequence] = []
    now = 0.0
    for at, output, prompt, stream in sorted(arrivals):
        now = run(s, now, until=at)
        seqs.append(s.submit(prompt_tokens=prompt, output_tokens=output, stream=stream, now=at))
        assert s.num_running <= max_seqs
    run(s, now)
    assert all(q.done and q.tokens_ready == q.output_tokens for q in seqs)
    starts = [q.started_at for q in seqs]
    assert starts == sorted(starts)  # type: ignore[type-var]
    for q in seqs:
        alone = model.predicted_e2e_s(prompt_tokens=q.prompt_tokens, output_tokens=q.output_tokens, running=1)
        busiest = model.predicted_e2e_s(
            prompt_tokens=q.prompt_tokens, output_tokens=q.output_tokens, running=max_seqs
        )
        assert q.finished_at is not None and q.started_at is not None
        assert q.finished_at - q.arrived_at >= alone - 1e-6
        assert q.finished_at - q.started_at <= busiest + 1e-6

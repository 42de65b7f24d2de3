"""The latency model on its own: size scaling, batching slowdown, prompt length and answer lengths."""

from __future__ import annotations

import statistics

import pytest

from zeta_sim.latency import LatencyModel, OutputLengths, estimate_tokens


def test_bigger_models_are_slower_per_token_and_to_first_token() -> None:
    small = LatencyModel.for_size(4, max_seqs=16)
    big = LatencyModel.for_size(14, max_seqs=16)
    assert big.tpot_s / small.tpot_s == pytest.approx(3.0)
    assert big.prefill_work_s(100) > 2 * small.prefill_work_s(100)


def test_slowdown_grows_with_running_sequences_up_to_one_plus_alpha() -> None:
    model = LatencyModel.for_size(7, max_seqs=8, batch_alpha=1.0)
    factors = [model.slowdown(r) for r in range(1, 9)]
    assert factors[0] == 1.0
    assert factors == sorted(factors)
    assert factors[-1] == pytest.approx(1 + 7 / 8)
    assert model.slowdown(100) == factors[-1]  # never more than max_seqs share the batch


def test_predicted_e2e_counts_prefill_and_every_token_after_the_first() -> None:
    model = LatencyModel(ttft_base_s=0.1, prefill_per_token_s=0.001, tpot_s=0.01, batch_alpha=1.0, max_seqs=4)
    assert model.predicted_e2e_s(prompt_tokens=100, output_tokens=11, running=1) == pytest.approx(0.3)
    assert model.predicted_e2e_s(
        prompt_tokens=100, output_tokens=11, running=3, extra_s=0.5
    ) == pytest.approx(0.5 + 1.5 * 0.3)


def test_overrides_win_over_size_defaults_and_bad_values_are_refused() -> None:
    model = LatencyModel.for_size(70, max_seqs=2, tpot_s=0.001, ttft_base_s=0.0, batch_alpha=0.0)
    assert (model.tpot_s, model.ttft_base_s, model.slowdown(2)) == (0.001, 0.0, 1.0)
    with pytest.raises(ValueError):
        LatencyModel.for_size(0, max_seqs=1)
    with pytest.raises(ValueError):
        LatencyModel.for_size(4, max_seqs=0)


def test_prompt_tokens_are_about_a_quarter_of_the_characters() -> None:
    assert estimate_tokens("") == 1
    assert estimate_tokens("x" * 400) == 100


def test_output_lengths_are_seeded_bounded_and_near_the_mean() -> None:
    first = [OutputLengths(mean=128, seed=3).draw(4096) for _ in range(1)]
    a, b = OutputLengths(mean=128, seed=3), OutputLengths(mean=128, seed=3)
    draws_a = [a.draw(4096) for _ in range(2000)]
    assert draws_a == [b.draw(4096) for _ in range(2000)]
    assert draws_a[:1] == first
    assert statistics.mean(draws_a) == pytest.approx(128, rel=0.1)
    other = OutputLengths(mean=128, seed=4)
    assert [other.draw(4096) for _ in range(50)] != draws_a[:50]
    capped = OutputLengths(mean=128, seed=3)
    assert all(1 <= capped.draw(10) <= 10 for _ in range(200))

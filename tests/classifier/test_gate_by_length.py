"""The per-length gate study (``python -m zeta_dev.classifier.gate_by_length``): its choices on made-up scores."""

from __future__ import annotations

from zeta_dev.classifier import gate_by_length, train
from zeta_dev.classifier.gate_by_length import Scored


def test_buckets_start_at_their_boundary() -> None:
    assert [gate_by_length.bucket_of(n, (100,)) for n in (0, 99, 100, 5000)] == [0, 0, 1, 1]


def test_one_allowance_puts_the_leak_where_it_buys_the_most_simple_requests() -> None:
    """Short asks: their complex ones look as simple as their simple ones (a leak buys little); long asks: the
    complex ones sit lower. The pair spends the allowance on the long bucket, and lets no short complex one by."""
    short = [Scored(0, 0.97, False)] * 20 + [Scored(0, 0.97, True)] * 20
    long_ = [Scored(1, 0.9, False)] * 2 + [Scored(1, 0.85, False)] * 2000 + [Scored(1, 0.95, True)] * 500
    scored = short + long_
    allowance = train.allowed_past_gate(2022)
    assert 2 <= allowance < 20
    thresholds = gate_by_length.under_one_allowance(scored, 2, grid=(0.8, 0.9, 0.95, 0.98, 0.99))
    assert thresholds == (0.98, 0.9)
    (c0, past0, s0, spill0), (c1, past1, s1, spill1), total = gate_by_length.counts(scored, thresholds)
    assert (past0, spill0, past1, spill1) == (0, 0, 2, 500)
    assert total == (c0 + c1, 2, s0 + s1, 500)


def test_each_bucket_by_its_own_evidence_is_stricter_where_there_is_little_of_it() -> None:
    """Ten complex requests cannot show 1% at 95% confidence whatever passes: the grid's highest."""
    few = [Scored(0, 0.5, False)] * 10 + [Scored(0, 0.99, True)] * 10
    many = [Scored(1, 0.6, False)] * 3000 + [Scored(1, 0.95, True)] * 100
    assert gate_by_length.per_bucket(few + many, 2) == (0.99, 0.61)

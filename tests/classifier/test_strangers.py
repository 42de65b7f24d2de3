"""The stranger study (``python -m zeta_dev.classifier.strangers``): who is held out, and how writers are weighted."""

from __future__ import annotations

import numpy as np
import pytest

from zeta_dev.classifier import strangers
from zeta_dev.classifier.corpus import Request, split_of
from zeta_operator.router.payload import PromptView


def _request(source: str, group: str) -> Request:
    return Request(f"{source}-{group}", group, source, "en", "chat", 1, PromptView("hi", 1, last_user="hi"))


def _group_in(split: str) -> str:
    return next(g for g in (f"g{i}" for i in range(1000)) if split_of(g) == split)


def test_only_the_newest_hand_writers_are_strangers() -> None:
    first = strangers.FIRST_STRANGER
    assert strangers.is_stranger(f"w{first}", first)
    assert strangers.is_stranger(f"w{first + 19}", first)
    assert not strangers.is_stranger(f"w{first - 1}", first)
    assert not strangers.is_stranger("w1", first)
    assert not strangers.is_stranger("humaneval", first)
    assert not strangers.is_stranger("inrepo", first)


def test_the_fit_never_reads_a_stranger_and_nobody_reads_the_test_split() -> None:
    train, calibration, test = (_group_in(s) for s in ("train", "calibration", "test"))
    requests = [_request(source, group) for source in ("w3", "w150") for group in (train, calibration, test)]
    fit_on, scored = strangers.split(requests, 144)
    assert [(r.source, r.split) for r in fit_on] == [("w3", "train")]
    assert [(r.source, r.split) for r in scored] == [("w150", "train"), ("w150", "calibration")]


def test_writer_weights_even_out_writers_at_power_one() -> None:
    sources = ["w1"] * 3 + ["w2"]
    w = strangers.writer_weights(sources, 1.0)
    assert w.mean() == pytest.approx(1.0)
    assert w[:3].sum() == pytest.approx(w[3])
    assert np.allclose(strangers.writer_weights(sources, 0.0), 1.0)

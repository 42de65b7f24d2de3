"""The second opinion's shipped head (zeta_operator/router/second_opinion.json) is what the corpus and the
training code produce (`zeta_dev.classifier.second_opinion`), with the real encoder."""

from __future__ import annotations

import json

import pytest

from zeta_dev.classifier import corpus
from zeta_dev.classifier import second_opinion as training
from zeta_operator.router import second_opinion as runtime


def test_the_head_is_fitted_on_the_train_split_only() -> None:
    requests = corpus.load()
    chosen = training.sample(requests)
    assert len(chosen) == training.SAMPLE
    assert {r.split for r in chosen} == {"train"}
    assert training.sample(requests) == chosen  # a fixed sample


# The encoder reads the 5,000 sampled requests' turns and instructions (about 7,000 texts, cut to 128 tokens)
# in about 5 minutes on two idle cores (2026-12-06, Intel Xeon); vectors are cached under .cache/ceiling/, so a
# second run takes seconds. Above the default 600 s it is a slow or shared machine, not a wrong result.
@pytest.mark.timeout(3600)
def test_the_shipped_head_is_reproduced_by_training() -> None:
    """Retrains as ``python -m zeta_dev.classifier.second_opinion`` does, and compares within the rounding of
    the encoder's and the solver's sums (`second_opinion.compare`). A failure means the corpus, the sample or
    the training code changed without retraining (run that command and commit the file)."""
    retrained = training.train(corpus.load())
    assert training.compare(retrained, json.loads(runtime.HEAD_FILE.read_text())) == []

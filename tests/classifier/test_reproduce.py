"""The comparison the retraining test makes off the machine that trained the shipped weights: what it lets
through (rounding) and what it catches (a changed setting, weight, bias or decision)."""

from __future__ import annotations

import base64
import copy
from functools import cache
from typing import Any

import numpy as np
import pytest

from zeta_dev.classifier import corpus, reproduce
from zeta_dev.classifier.corpus import Request
from zeta_operator.router import features, model


@cache
def shipped() -> dict[str, Any]:
    return reproduce.read(model.WEIGHTS_FILE)


@cache
def sample() -> tuple[Request, ...]:
    return tuple(corpus.select(corpus.load(), "calibration")[::40])


def edited(change_text: Any = None, **entries: Any) -> dict[str, Any]:
    """A copy of the shipped file with ``entries`` replaced and ``change_text`` applied to its int16 text
    weights (an array: buckets x outputs)."""
    data = copy.deepcopy(shipped())
    data.update(entries)
    if change_text is not None:
        text = np.frombuffer(base64.b64decode(data["text"]), "<i2").reshape(-1, len(data["scale"])).copy()
        change_text(text)
        data["text"] = base64.b64encode(text.astype("<i2").tobytes()).decode()
    return data


def test_the_shipped_file_reproduces_itself_with_every_block_compared() -> None:
    result = reproduce.compare(shipped(), shipped(), sample())
    assert result.failures() == []
    assert result.largest == {
        "bias": 0.0,
        "text": 0.0,
        "structure": 0.0,
        "meaning.turn": 0.0,
        "meaning.instruction": 0.0,
        "probability": 0.0,
    }


def test_rounding_like_another_cpus_passes() -> None:
    """Shaped like the measured difference between two CPUs: per output, as many text weights one step apart
    (most where the scale is finest, the complexity levels'). Not the intercepts' larger moves measured with
    them: those came with weights moving the other way (a flat valley of the loss), which no edit of a few
    numbers imitates, and a lone intercept moved that far moves the probabilities by more."""
    rng = np.random.default_rng(7)
    flips = np.array([87, 78, 199, 58, 972, 2533, 2461, 731, 476]) / 131072  # share of each output's weights

    def round_differently(text: np.ndarray) -> None:
        hit = rng.random(text.shape) < flips
        text[hit] += rng.choice([-1, 1], hit.sum()).astype(text.dtype)

    result = reproduce.compare(edited(round_differently), shipped(), sample())
    assert result.failures() == [], result.summary()
    assert 0 < result.largest["text"] <= 1 / min(shipped()["scale"])
    assert result.largest["probability"] > 0


def test_a_weight_moved_past_the_tolerance_is_caught() -> None:
    scale = shipped()["scale"]
    coarsest = scale.index(min(scale))
    steps = int(reproduce.WEIGHT_ATOL * scale[coarsest]) + 1

    def move_one(text: np.ndarray) -> None:
        text[123, coarsest] += steps

    failures = reproduce.compare(edited(move_one), shipped(), sample()).failures()
    assert len(failures) == 1 and failures[0].startswith("text differ by up to")


def test_a_bias_moved_past_its_tolerance_is_caught() -> None:
    bias = [*shipped()["bias"][:-1], shipped()["bias"][-1] + 1.5 * reproduce.BIAS_ATOL]
    failures = reproduce.compare(edited(bias=bias), shipped(), sample()).failures()
    assert any(f.startswith("bias differ") for f in failures)


def test_a_structure_row_the_file_leaves_out_counts_as_zeros() -> None:
    """A structure feature whose weights all round to 0 is not in the file; rounding elsewhere can bring it
    back one step off zero, which is a weight like any other, not a changed layout."""
    rows = shipped()["structure"]
    name = next(n for n in features.all_structure_names() if n not in rows)
    outputs = len(shipped()["scale"])
    result = reproduce.compare(edited(structure={**rows, name: [1] * outputs}), shipped(), sample())
    assert result.failures() == [] and result.largest["structure"] == 1 / min(shipped()["scale"])


def test_decisions_are_checked_even_when_each_number_is_within_its_tolerance() -> None:
    """Every task intercept moved just inside BIAS_ATOL, alternately up and down: no number past its own
    tolerance, but the task probabilities move by more than PROBABILITY_ATOL."""
    k = len(shipped()["tasks"])
    nudge = 0.95 * reproduce.BIAS_ATOL
    bias = [b + (nudge if i % 2 else -nudge) if i < k else b for i, b in enumerate(shipped()["bias"])]
    failures = reproduce.compare(edited(bias=bias), shipped(), sample()).failures()
    assert len(failures) == 1 and failures[0].startswith("probability differ"), failures


@pytest.mark.parametrize(
    ("entries", "named"),
    [
        ({"offloadConfidence": 0.96}, "offloadConfidence"),
        ({"temperature": {"task": 1.0, "complexity": 1.12}}, "temperature"),
        ({"corpus": "0" * 16}, "corpus"),
        ({"scale": [s * 2 for s in shipped()["scale"]]}, "scale"),
        (
            {"structure": {**shipped()["structure"], "not-a-feature": [1] * len(shipped()["scale"])}},
            "structure",
        ),
    ],
)
def test_a_changed_setting_or_layout_is_named_and_no_number_compared(
    entries: dict[str, Any], named: str
) -> None:
    result = reproduce.compare(edited(**entries), shipped(), sample())
    assert result.failures() == [f"settings differ: {named}"] and result.largest == {}

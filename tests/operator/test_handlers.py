"""The kopf glue's own logic (the handlers are otherwise exercised end to end in test_operator_e2e.py)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from zeta_operator.operator.handlers import DEFAULT_INTERVAL, _interval

SAMPLE = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "manifests/samples/routingpolicy.yaml").read_text()
)


def with_interval(value: Any) -> dict[str, Any]:
    body = copy.deepcopy(SAMPLE)
    body["spec"]["adaptation"]["interval"] = value
    return dict(body)


def test_the_interval_comes_from_the_validated_spec() -> None:
    assert _interval(SAMPLE) == 5.0
    assert _interval(with_interval("30s")) == 30.0
    assert _interval(with_interval("500ms")) == 0.5


@pytest.mark.parametrize("value", ["0s", "-1s", "soon", 5, None])
def test_an_interval_the_model_rejects_falls_back_to_the_default(value: Any) -> None:
    """The raw spec once decided the loop's period: ``0s`` parsed as a duration and made it spin."""
    assert _interval(with_interval(value)) == DEFAULT_INTERVAL == 5.0


def test_an_otherwise_invalid_spec_cycles_at_the_default_interval() -> None:
    body = with_interval("1s")
    body["spec"]["classes"][0]["preferred"] = []  # the model requires at least one
    assert _interval(body) == DEFAULT_INTERVAL

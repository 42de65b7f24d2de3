"""The taskConfidence table of the calibration split (``python -m zeta_dev.classifier.task_confidence``)."""

from __future__ import annotations

import pytest

from zeta_dev.classifier import task_confidence
from zeta_operator.api.policy import ComplexityRange
from zeta_operator.api.table import TableClass
from zeta_operator.router.classify import Classification


def _classified(true_task: str, *probabilities: tuple[str, float]) -> tuple[str, Classification]:
    chat = TableClass(
        name="chat-simple", task_type="chat", complexity=ComplexityRange(min=1, max=2), priority=5,
        latency_objective_seconds=4.0, weights={},
    )  # fmt: skip
    decided = probabilities[0][0]
    return true_task, Classification(chat, decided, 1, 5, 10, "model", task_probabilities=probabilities)


def test_a_higher_threshold_catches_more_and_restricts_more() -> None:
    classified = [
        _classified("summarize", ("chat", 0.6), ("summarize", 0.35), ("code", 0.05)),
        _classified("chat", ("chat", 0.95), ("code", 0.05)),
        _classified("code", ("chat", 0.9), ("reasoning", 0.06), ("code", 0.04)),
    ]
    rows = task_confidence.rows(classified, grid=(0.0, 0.9, 0.99))
    assert [(r.outside, r.restricted) for r in rows] == [(2, 0), (1, 1), (0, 3)]


def test_the_calibration_split_table_prints(capsys: pytest.CaptureFixture[str]) -> None:
    task_confidence.main([])
    out = capsys.readouterr().out
    assert "Calibration split:" in out
    assert out.count("\n| ") == len(task_confidence.GRID) + 1  # header and one row per threshold

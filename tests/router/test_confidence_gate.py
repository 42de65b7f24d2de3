"""Never down on doubt: during an offload, a request the classifier is unsure of is never spilled to a smaller
model, and one it is confident is simple is; a request that may be of another task type never goes to a backend
lacking it; explicit evidence (headers) is unaffected."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from zeta_operator.api.policy import ClassifierSettings
from zeta_operator.api.table import RoutingTable, TableBackend, TableClass, TableEndpoint, TableQueue
from zeta_operator.router.balancer import choose
from zeta_operator.router.classify import Classification, certain, plausible_tasks, shifted, spill_floor
from zeta_operator.router.model import LearnedModel, Prediction
from zeta_operator.router.payload import PromptView, parse_request, prompt_view
from zeta_operator.router.proxy import Forwarder
from zeta_operator.router.snapshot import TableSnapshot

from .learned import learned_model

SHORT = "fix my typo"
"""Under 20 characters: the test model is sure it is simple."""
LONGER = "Implement a rate limiter shared by every replica of our API gateway, with bursts and fairness."
"""60-150 characters: a size the test model finds a close call (P(simple) about 0.52)."""

# Task head: always code. Complexity head by size: very short -> simple (P(simple) ~ 0.99); 60-150 characters
# -> a close call between 2 and 3.
MODEL = learned_model(
    structure={
        "chars:0": ([0, 5, 0, 0], [1, 5, -3, -4, -4]),
        "chars:2": ([0, 5, 0, 0], [-2, 1.4, 1.0, 0, -2]),
    },
    offload_confidence=0.9,
)


class Idle:
    def inflight(self, url: str) -> int:
        return 0

    def ejected(self, url: str) -> bool:
        return False


def offloading_table(offload_confidence: float = 0.9) -> RoutingTable:
    """code-simple (1-2) prefers coder-7b (ceiling 4), which is over its high watermark: the operator moved 80%
    of the class to general-4b (ceiling 2), a smaller model."""
    return RoutingTable(
        policy="test/gate",
        classifier=ClassifierSettings(offload_confidence=offload_confidence),
        queue=TableQueue(max_size=10, max_wait_seconds=1, aging_seconds=1),
        backends=[
            TableBackend(
                name=name,
                model=name,
                tasks=["code"],
                max_complexity=ceiling,
                context_window=32768,
                endpoints=[TableEndpoint(url=f"http://{name}:8000", max_concurrency=100)],
            )
            for name, ceiling in (("coder-7b", 4), ("general-4b", 2))
        ],
        classes=[
            TableClass(
                name="code-simple",
                task_type="code",
                complexity={"min": 1, "max": 2},
                priority=5,
                latency_objective_seconds=5,
                weights={"coder-7b": 0.2, "general-4b": 0.8},
                reasons={"coder-7b": "offload", "general-4b": "offload"},
                preferred=["coder-7b"],
            ),
            TableClass(
                name="code-complex",
                task_type="code",
                complexity={"min": 3, "max": 4},
                priority=5,
                latency_objective_seconds=5,
                weights={"coder-7b": 1.0},
                preferred=["coder-7b"],
            ),
        ],
    )


def served_by(
    text: str | PromptView,
    *,
    headers: dict[str, str] | None = None,
    table: RoutingTable | None = None,
    model: LearnedModel = MODEL,
) -> Counter[str]:
    snapshot = TableSnapshot.build(table or offloading_table(), model=model)
    view = prompt_view([text]) if isinstance(text, str) else text
    cls = snapshot.classifier.classify(headers or {}, "any", view)
    route = snapshot.routes[cls.task_class.name]
    settings = snapshot.table.classifier
    eligible = Forwarder._eligible(
        route,
        cls,
        settings.offload_confidence,
        settings.task_confidence,
        settings.offload_task_confidence,
    )
    rng = random.Random(7)
    served: Counter[str] = Counter()
    for _ in range(400):
        choice = choose(eligible, Idle(), rng)
        assert choice is not None
        served[choice.backend.name] += 1
    return served


def test_the_test_model_is_sure_of_short_and_unsure_of_longer_requests() -> None:
    snapshot = TableSnapshot.build(offloading_table(), model=MODEL)
    short = snapshot.classifier.classify({}, "any", prompt_view([SHORT]))
    longer = snapshot.classifier.classify({}, "any", prompt_view([LONGER]))
    assert short.simple_probability > 0.97
    assert 0.5 < longer.simple_probability < 0.6
    assert longer.task_class.name == "code-simple"  # the estimate is simple, but not surely


def test_uncertain_requests_are_never_spilled_down_during_an_offload() -> None:
    served = served_by(LONGER)
    assert served == {"coder-7b": 400}


def test_confident_simple_requests_are_spilled_down() -> None:
    served = served_by(SHORT)
    assert served["general-4b"] > 250  # about 80%, as the table says
    assert served["coder-7b"] > 0


def test_a_lower_offload_confidence_lets_the_close_call_spill() -> None:
    """offloadConfidence is the knob: at 0.5 the close call (P(simple) ~ 0.52) may go down too."""
    served = served_by(LONGER, table=offloading_table(offload_confidence=0.5))
    assert served["general-4b"] > 0


def conversation(*user_turns: str) -> PromptView:
    messages = []
    for turn in user_turns:
        messages += [{"role": "user", "content": turn}, {"role": "assistant", "content": "Here you are."}]
    return parse_request(json.dumps({"model": "m", "messages": messages[:-1]}).encode(), "chat").prompt


def test_a_follow_up_spills_only_when_the_ask_it_follows_was_surely_simple_too() -> None:
    """ "fix my typo" alone is surely simple; after an ask the model is unsure of, it is as hard as that ask
    may be (the follow-up's difficulty is in what it continues), so it stays up. Its own estimate and
    confidence are still its own."""
    after_doubt = conversation(LONGER, SHORT)
    assert served_by(after_doubt) == {"coder-7b": 400}
    assert served_by(conversation("hi", SHORT))["general-4b"] > 250
    snapshot = TableSnapshot.build(offloading_table(), model=MODEL)
    cls = snapshot.classifier.classify({}, "any", after_doubt)
    assert cls.task_class.name == "code-simple" and cls.simple_probability > 0.97
    assert 0.5 < cls.spill_probability < 0.6
    assert cls.confidence == snapshot.classifier.classify({}, "any", prompt_view([SHORT])).confidence


def test_a_complexity_header_is_certain_and_unaffected(monkeypatch: pytest.MonkeyPatch) -> None:
    assert served_by(LONGER, headers={"X-Zeta-Complexity": "2"})["general-4b"] > 250
    assert served_by(SHORT, headers={"X-Zeta-Complexity": "4"}) == {"coder-7b": 400}
    # Nor is the ask a follow-up continues predicted: the gate has nothing to ask it.
    asked: list[bool] = []
    predict = MODEL.predict

    def recorded(*args: Any, earlier: bool = True) -> Prediction:
        asked.append(earlier)
        return predict(*args, earlier=earlier)

    monkeypatch.setattr(MODEL, "predict", recorded)
    classifier = TableSnapshot.build(offloading_table(), model=MODEL).classifier
    cls = classifier.classify({"X-Zeta-Complexity": "2"}, "any", conversation("hi", SHORT))
    assert asked == [False] and cls.earlier_at_most is None and cls.spill_probability == 1.0
    assert classifier.classify({}, "any", conversation("hi", SHORT)).earlier_at_most is not None


def test_the_ask_a_follow_up_continues_is_predicted_only_when_the_gate_could_use_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The earlier ask's prediction can only raise the spill floor; it is made when the request alone would
    clear the gate below the protected ceiling, once, and the floor is what the eager rule gives."""
    asked: list[PromptView] = []
    at_most = MODEL.at_most

    def recorded(view: PromptView) -> tuple[float, ...]:
        asked.append(view)
        return at_most(view)

    monkeypatch.setattr(MODEL, "at_most", recorded)
    classifier = TableSnapshot.build(offloading_table(), model=MODEL).classifier
    for earlier, last in ((LONGER, SHORT), (SHORT, SHORT), (SHORT, LONGER), (LONGER, LONGER)):
        for protected in range(1, 6):
            for offload_confidence in (0.0, 0.5, 0.9, 0.999):
                cls = classifier.classify({}, "any", conversation(earlier, last))
                asked.clear()
                floor = spill_floor(cls, protected_ceiling=protected, offload_confidence=offload_confidence)
                alone = next((k for k, p in enumerate(cls.at_most, 1) if p >= offload_confidence), 5)
                assert len(asked) == (alone < protected)
                both = next((k for k, p in enumerate(cls.spill_at_most, 1) if p >= offload_confidence), 5)
                assert floor == max(cls.complexity, min(both, protected))
                assert len(asked) == 1 and asked[0].last_user == earlier  # computed once, then kept
    # The case the laziness is for: a follow-up sure to be simple after a long ask the model doubts. Alone
    # it would clear the gate; with the ask it follows it stays with the preferred backends.
    cls = classifier.classify({}, "any", conversation(LONGER, SHORT))
    assert cls.simple_probability > 0.9 > cls.spill_probability
    assert spill_floor(cls, protected_ceiling=4, offload_confidence=0.9) > 2


def _classification(at_most: tuple[float, ...], complexity: int) -> Classification:
    table_class = offloading_table().classes[0]
    return Classification(table_class, "code", complexity, 5, 10, "model", 0.5, at_most)


@pytest.mark.parametrize(
    ("at_most", "complexity", "protected", "floor"),
    [
        ((0.5, 0.95, 0.99, 1.0, 1.0), 2, 4, 2),  # sure it is simple: the smaller model may take it
        ((0.2, 0.6, 0.95, 1.0, 1.0), 2, 4, 3),  # unsure: at least a ceiling of 3 (sure of <= 3)
        ((0.2, 0.6, 0.7, 0.8, 1.0), 2, 4, 4),  # very unsure: the preferred ceiling, never more
        ((0.2, 0.6, 0.7, 0.8, 1.0), 2, 2, 2),  # the preferred backends are the small ones: stay there
        ((0.0, 0.0, 0.0, 0.0, 1.0), 5, 4, 5),  # the estimate itself is never lowered
    ],
)
def test_spill_floor(at_most: tuple[float, ...], complexity: int, protected: int, floor: int) -> None:
    cls = _classification(at_most, complexity)
    assert spill_floor(cls, protected_ceiling=protected, offload_confidence=0.9) == floor


def test_a_rule_bonus_shifts_the_distribution_up() -> None:
    assert shifted((0.5, 0.9, 1.0, 1.0, 1.0), 2) == (0.0, 0.0, 0.5, 0.9, 1.0)
    assert certain(3) == (0.0, 0.0, 1.0, 1.0, 1.0)


# --- Task type: never to a backend lacking a task type the request plausibly is -----------------------------

CHAT_OR_SUMMARY_STRUCTURE: dict[str, tuple[list[float], list[float]]] = {
    "chars:0": ([5, -9, -9, 0], [5, 5, -5, -5, -5]),  # very short: surely chat (P ~ 0.99), simple
    "chars:2": ([1.0, -9, -9, 0.8], [5, 5, -5, -5, -5]),  # 60-150 characters: chat 0.55, summary 0.45
}
"""Task head over chat and summarize only (code and reasoning far below); complexity always surely simple."""
CHAT_OR_SUMMARY = learned_model(structure=CHAT_OR_SUMMARY_STRUCTURE, offload_confidence=0.9)


def chat_table(task_confidence: float = 0.9) -> RoutingTable:
    """The chat class leans on the coder (it chats but cannot summarize); the general model does both."""
    return RoutingTable(
        policy="test/gate",
        classifier=ClassifierSettings(offload_confidence=0.9, task_confidence=task_confidence),
        queue=TableQueue(max_size=10, max_wait_seconds=1, aging_seconds=1),
        backends=[
            TableBackend(
                name=name,
                model=name,
                tasks=tasks,
                max_complexity=4,
                context_window=32768,
                endpoints=[TableEndpoint(url=f"http://{name}:8000", max_concurrency=100)],
            )
            for name, tasks in (("coder-7b", ["code", "chat"]), ("general-4b", ["chat", "summarize"]))
        ],
        classes=[
            TableClass(
                name=name,
                task_type=task,
                complexity={"min": 1, "max": 2},
                priority=5,
                latency_objective_seconds=5,
                weights=weights,
            )
            for name, task, weights in (
                ("chat", "chat", {"coder-7b": 0.8, "general-4b": 0.2}),
                ("summarize", "summarize", {"general-4b": 1.0}),
            )
        ],
    )


def test_a_request_that_may_be_a_summary_never_goes_to_a_backend_that_cannot_summarize() -> None:
    snapshot = TableSnapshot.build(chat_table(), model=CHAT_OR_SUMMARY)
    unsure = snapshot.classifier.classify({}, "any", prompt_view([LONGER]))
    assert unsure.task_type == "chat" and 0.5 < unsure.task_probabilities[0][1] < 0.6
    assert served_by(LONGER, table=chat_table(), model=CHAT_OR_SUMMARY) == {"general-4b": 400}


def test_without_a_task_confidence_the_most_likely_task_type_alone_decides() -> None:
    """taskConfidence 0 (the default): the unsure request follows the chat class's weights, mostly to the
    coder, which cannot summarize."""
    served = served_by(LONGER, table=chat_table(task_confidence=0.0), model=CHAT_OR_SUMMARY)
    assert served["coder-7b"] > 250  # about 80% of 400, as the weights say


def test_a_request_surely_of_one_task_type_follows_the_weights() -> None:
    served = served_by(SHORT, table=chat_table(), model=CHAT_OR_SUMMARY)
    assert served["coder-7b"] > 250  # about 80%, as the table says
    assert served["general-4b"] > 0


def test_a_task_header_is_certain_and_unaffected() -> None:
    served = served_by(LONGER, headers={"X-Zeta-Task": "chat"}, table=chat_table(), model=CHAT_OR_SUMMARY)
    assert served["coder-7b"] > 250


def test_when_no_backend_serves_every_plausible_task_type_the_likeliest_one_decides() -> None:
    """Without a backend that both chats and summarizes, the doubt cannot be honoured: the request is served
    as what it most likely is (chat), not refused."""
    table = chat_table()
    general = table.backends[1].model_copy(update={"endpoints": []})
    table = table.model_copy(update={"backends": [table.backends[0], general]})
    assert served_by(LONGER, table=table, model=CHAT_OR_SUMMARY) == {"coder-7b": 400}


def leaving_table(preferred: str, **classifier: float) -> RoutingTable:
    """`chat_table`'s chat class with a preferred backend and the operator's weights leaning on the coder (it
    chats but cannot summarize); taskConfidence off, offloadTaskConfidence as given (else the API's)."""
    table = chat_table(task_confidence=0.0)
    chat = table.classes[0].model_copy(update={"preferred": [preferred]})
    settings = table.classifier.model_copy(update=classifier)
    return table.model_copy(update={"classes": [chat, table.classes[1]], "classifier": settings})


def test_leaving_the_preferred_backend_an_unsure_request_goes_only_where_its_task_types_are_served() -> None:
    """offloadTaskConfidence (on by default): the chat class prefers the general model; the coder, which the
    weights lean on, is an offload, and the request may be a summary: it stays with the general model."""
    assert leaving_table("general-4b").classifier.offload_task_confidence > 0.6  # the API's default is on
    assert served_by(LONGER, table=leaving_table("general-4b"), model=CHAT_OR_SUMMARY) == {"general-4b": 400}
    off = leaving_table("general-4b", offload_task_confidence=0.0)
    assert served_by(LONGER, table=off, model=CHAT_OR_SUMMARY)["coder-7b"] > 250
    sure = served_by(SHORT, table=leaving_table("general-4b"), model=CHAT_OR_SUMMARY)
    assert sure["coder-7b"] > 250  # surely chat: the weights decide


def test_the_preferred_backends_keep_every_request_of_their_class() -> None:
    """Unlike taskConfidence, it leaves the class's own preferred backends alone: with the coder preferred
    the unsure request still follows the weights there (no traffic moves to the backends that serve all)."""
    served = served_by(LONGER, table=leaving_table("coder-7b"), model=CHAT_OR_SUMMARY)
    assert served["coder-7b"] > 250 and served["general-4b"] > 0
    everywhere = leaving_table("coder-7b", task_confidence=0.9)
    assert served_by(LONGER, table=everywhere, model=CHAT_OR_SUMMARY) == {"general-4b": 400}


def test_with_the_preferred_backend_gone_an_unsure_request_is_still_served_elsewhere() -> None:
    table = leaving_table("general-4b")
    general = table.backends[1].model_copy(update={"endpoints": []})
    table = table.model_copy(update={"backends": [table.backends[0], general]})
    assert served_by(LONGER, table=table, model=CHAT_OR_SUMMARY) == {"coder-7b": 400}


@pytest.mark.parametrize(
    ("ranked", "plausible"),
    [
        ((), ("chat",)),  # certain (header, alias, rule)
        ((("chat", 0.95), ("summarize", 0.05)), ("chat",)),
        ((("chat", 0.6), ("summarize", 0.25), ("code", 0.15)), ("chat", "summarize", "code")),
        ((("chat", 0.6), ("summarize", 0.35), ("code", 0.05)), ("chat", "summarize")),
    ],
)
def test_plausible_tasks_cover_the_confidence(
    ranked: tuple[tuple[str, float], ...], plausible: tuple[str, ...]
) -> None:
    table_class = chat_table().classes[0]
    cls = Classification(table_class, "chat", 1, 5, 10, "model", 0.5, certain(1), ranked)
    assert plausible_tasks(cls, confidence=0.9) == plausible

"""The policy's labelled examples as classifier evidence: what counts as close, what a match decides, and that a
near miss never makes a request look simpler (never down on doubt)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeta_operator.api.policy import ClassifierExample, ClassifierSettings, KeywordRule
from zeta_operator.api.table import RoutingTable, TableClass
from zeta_operator.router import features
from zeta_operator.router.balancer import choose
from zeta_operator.router.classify import LEVELS, Classification, Classifier, spill_floor
from zeta_operator.router.examples import (
    FULL_AT,
    MATCH_FROM,
    ExampleIndex,
    ExampleMatch,
    estimate,
    pushed_up,
)
from zeta_operator.router.payload import prompt_view
from zeta_operator.router.proxy import Forwarder
from zeta_operator.router.snapshot import TableSnapshot

from .test_confidence_gate import LONGER, MODEL, SHORT, Idle, offloading_table

EXPORT = "Add the tenant id to every row of the nightly billing export"
NEAR_EXPORT = "add the tenant ID to each row of the nightly billing exports"
UNRELATED = "What is the capital of France?"


def example(text: str, task: str = "code", complexity: int = 4) -> ClassifierExample:
    return ClassifierExample(text=text, task_type=task, complexity=complexity)


# ---------------------------------------------------------------- the index


def test_an_exact_match_ignores_case_and_spacing() -> None:
    index = ExampleIndex([example(EXPORT)])
    match = index.nearest("  ADD the tenant id to every\nrow of the   nightly billing export ")
    assert match == ExampleMatch("code", 4, 1.0, True)
    assert match.weight == 1.0


def test_a_rephrasing_is_near_and_an_unrelated_prompt_is_not() -> None:
    index = ExampleIndex([example(EXPORT), example("Translate this ticket into German", "chat", 2)])
    near = index.nearest(NEAR_EXPORT)
    assert near is not None and not near.exact
    assert (near.task_type, near.complexity) == ("code", 4)
    assert MATCH_FROM <= near.similarity < 1.0
    assert 0.0 < near.weight < 1.0
    assert index.nearest(UNRELATED) is None
    assert index.nearest("") is None


def test_the_same_words_are_not_an_exact_match() -> None:
    """Same bag of words, other order: similarity 1, but only the same text counts as exact."""
    index = ExampleIndex([example("export the billing rows nightly")])
    match = index.nearest("nightly export the billing rows")
    assert match is not None and match.similarity == pytest.approx(1.0) and not match.exact
    assert match.weight == 1.0  # still full weight upwards: it only ever pushes complexity up


def test_an_exact_text_wins_over_the_same_words_in_another_order() -> None:
    index = ExampleIndex(
        [
            example("export the billing rows nightly", complexity=5),
            example("nightly export the billing rows", complexity=1),
        ]
    )
    assert index.nearest("Nightly export the billing rows") == ExampleMatch("code", 1, 1.0, True)


def test_the_nearest_example_wins_and_a_tie_goes_to_the_more_complex() -> None:
    index = ExampleIndex(
        [example("rotate keys", "code", 2), example("Rotate keys", "code", 5), example(EXPORT, "chat", 3)]
    )
    # "rotate keys" twice (normalised duplicates are refused by the API; the index takes the more complex)
    match = index.nearest("rotate keys")
    assert match is not None and match.complexity == 5
    match = index.nearest(NEAR_EXPORT)
    assert match is not None and match.task_type == "chat"


def test_a_known_task_type_only_looks_at_its_own_examples() -> None:
    index = ExampleIndex([example(EXPORT, "chat", 2)])
    assert index.nearest(EXPORT, task="chat") is not None
    assert index.nearest(EXPORT, task="code") is None


def test_examples_are_featurised_once_per_table_not_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "_word_bucket_cache", {})  # no word hashed by an earlier test
    index = ExampleIndex([example(EXPORT), example("Translate this ticket into German", "chat", 2)])
    calls: Counter[str] = Counter()
    real = features.word_buckets

    def counting(word: str) -> list[int]:
        calls[word] += 1
        return real(word)

    monkeypatch.setattr(features, "word_buckets", counting)
    for _ in range(3):
        index.nearest(NEAR_EXPORT)
    # Only the request's words unknown to the examples are hashed, and only the first time.
    assert calls and max(calls.values()) == 1
    assert "export" not in calls and "exports" in calls


def test_a_word_the_examples_hashed_is_not_hashed_again_by_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(features, "_word_bucket_cache", {})
    MODEL.clear_cache()  # no word summed by an earlier test
    settings = ClassifierSettings(examples=[example(EXPORT)])
    classifier = Classifier(settings, offloading_table().classes, default_class=None, model=MODEL)
    calls: Counter[str] = Counter()
    real = features.word_buckets

    def counting(word: str) -> list[int]:
        calls[word] += 1
        return real(word)

    monkeypatch.setattr(features, "word_buckets", counting)
    classifier.classify({}, "m", prompt_view(["Please zorbify the quuxes " + NEAR_EXPORT]))
    assert calls["zorbify"] == 1 and calls["quuxes"] == 1
    assert max(calls.values()) == 1


WORDS = st.sampled_from(
    [
        "add",
        "the",
        "tenant",
        "id",
        "row",
        "nightly",
        "billing",
        "export",
        "exports",
        "fix",
        "typo",
        "rotate",
        "keys",
    ]
)
TEXTS = st.lists(WORDS, min_size=1, max_size=8).map(" ".join)


@given(st.lists(TEXTS, min_size=1, max_size=12), TEXTS)
def test_nearest_is_the_most_similar_example_from_match_from(texts: list[str], turn: str) -> None:
    """`nearest` stops early on a bound; it must never miss an example `similarities` finds close enough."""
    index = ExampleIndex([example(t, "code", 1 + i % 5) for i, t in enumerate(texts)])
    close = [s for s in index.similarities(turn, prune=True) if s >= MATCH_FROM]
    match = index.nearest(turn)
    if not close:
        assert match is None
    else:
        assert match is not None
        assert match.similarity == (1.0 if match.exact else min(1.0, max(close)))


@given(
    st.lists(st.floats(0.0, 1.0), min_size=LEVELS, max_size=LEVELS).map(sorted),
    st.integers(1, LEVELS),
    st.floats(0.0, 1.0),
)
def test_a_near_match_never_raises_the_probability_of_being_simpler(
    at_most: list[float], level: int, similarity: float
) -> None:
    before = tuple(at_most)
    after = pushed_up(before, ExampleMatch("code", level, similarity, exact=False))
    assert all(a <= b + 1e-12 for a, b in zip(after, before, strict=True))
    assert list(after) == sorted(after)  # still a distribution function
    assert estimate(after, simple_max=2) >= 1


def test_the_weight_ramps_between_the_thresholds() -> None:
    weights = [
        ExampleMatch("c", 3, s, False).weight
        for s in (0.5, MATCH_FROM, (MATCH_FROM + FULL_AT) / 2, FULL_AT, 1)
    ]
    assert weights == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


# ---------------------------------------------------------------- in the classifier


def table_with(examples: list[ClassifierExample], **settings: object) -> RoutingTable:
    """The confidence-gate test's table (code-simple offloading 80% to the 2-ceiling general-4b) with examples."""
    base = offloading_table()
    classifier = ClassifierSettings(offload_confidence=0.9, examples=examples, **settings)
    return base.model_copy(update={"classifier": classifier})


def classify(table: RoutingTable, text: str, headers: dict[str, str] | None = None) -> Classification:
    snapshot = TableSnapshot.build(table, model=MODEL)
    return snapshot.classifier.classify(headers or {}, "any", prompt_view([text]))


def spilled(table: RoutingTable, text: str) -> int:
    """How many of 400 requests like ``text`` went to the smaller general-4b during the offload."""
    snapshot = TableSnapshot.build(table, model=MODEL)
    cls = snapshot.classifier.classify({}, "any", prompt_view([text]))
    eligible = Forwarder._eligible(snapshot.routes[cls.task_class.name], cls, 0.9)
    rng = random.Random(7)
    return sum(choose(eligible, Idle(), rng).backend.name == "general-4b" for _ in range(400))  # type: ignore[union-attr]


def test_a_close_prompt_is_classified_as_the_complex_example_says_and_is_not_spilled() -> None:
    complex_example = example("fix my typos now", complexity=4)  # short: the test model says simple, surely
    text = "fix my typo now"
    plain = classify(offloading_table(), text)
    assert (
        plain.task_class.name == "code-simple" and plain.simple_probability > 0.9
    )  # the model alone: simple
    assert spilled(offloading_table(), text) > 250
    got = classify(table_with([complex_example]), text)
    assert got.source == "example"  # it agrees with the model on code, and decided the level
    assert got.complexity == 4 and got.task_class.name == "code-complex"
    assert got.simple_probability < plain.simple_probability * 0.5
    assert spilled(table_with([complex_example]), text) == 0


def test_a_near_simple_example_never_makes_a_request_look_simpler() -> None:
    """LONGER is a close call for the model (P(simple) ~0.52): a simple example that is close but not the
    same text must leave it exactly as doubtful, so it still stays with the preferred backend."""
    near = LONGER.replace("rate limiter", "rate-limiter").replace("fairness", "fair queuing")
    simple_example = example(near, complexity=1)
    plain = classify(offloading_table(), LONGER)
    got = classify(table_with([simple_example]), LONGER)
    index = ExampleIndex([simple_example])
    match = index.nearest(LONGER)
    assert match is not None and not match.exact and match.weight > 0.5
    assert got.at_most == plain.at_most
    assert got.complexity == plain.complexity
    assert spilled(table_with([simple_example]), LONGER) == 0


def test_an_exact_simple_example_is_certain_and_may_spill() -> None:
    got = classify(table_with([example(LONGER, complexity=2)]), LONGER.upper())
    assert (got.source, got.complexity, got.confidence, got.simple_probability) == ("example", 2, 1.0, 1.0)
    assert spilled(table_with([example(LONGER, complexity=2)]), LONGER) > 250
    assert spill_floor(got, protected_ceiling=4, offload_confidence=0.9) == 2


def test_an_example_decides_the_task_type_over_the_model() -> None:
    """The test model says code for everything; a close summarize example wins the task type."""
    base = table_with([example("Boil these standup notes down to three bullets", "summarize", 2)])
    summaries = TableClass(
        name="summaries",
        task_type="summarize",
        complexity={"min": 1, "max": 5},
        priority=5,
        latency_objective_seconds=5,
        weights={},
    )
    table = base.model_copy(update={"classes": [*base.classes, summaries]})
    got = classify(table, "boil these stand-up notes down to 3 bullets")
    assert (got.task_class.name, got.source) == ("summaries", "example")
    assert 0.5 < got.confidence < 1.0
    assert classify(table, "fix my typo").task_class.name == "code-simple"


def test_headers_and_keyword_rules_still_come_first() -> None:
    rule = KeywordRule(task_type="code", keywords=["shard"], complexity_bonus=0)
    examples = [example(SHORT + " across every shard", complexity=1)]
    table = table_with(examples, rules=[rule])
    by_header = classify(table, SHORT + " across every shard", headers={"X-Zeta-Complexity": "4"})
    assert (by_header.complexity, by_header.source) == (4, "rule")
    by_rule = classify(table, SHORT + " across every shard")
    assert by_rule.source == "rule" and by_rule.complexity == 1  # the exact example sets the level
    assert classify(table, "unrelated " * 3).source == "model"


def test_the_rule_classifier_takes_a_close_example_upwards_only() -> None:
    index_table = table_with([example(SHORT + " across every shard", complexity=4)])
    snapshot = TableSnapshot.build(index_table, model=None)
    up = snapshot.classifier.classify({}, "any", prompt_view([SHORT + " across each shard"]))
    assert (up.source, up.complexity) == ("example", 4)
    simple_table = table_with([example("Implement a lock-free distributed consensus log", complexity=1)])
    rules = TableSnapshot.build(simple_table, model=None).classifier
    code = {"X-Zeta-Task": "code"}
    near = rules.classify(code, "any", prompt_view(["implement a lock-free distributed consensus log now"]))
    plain = TableSnapshot.build(offloading_table(), model=None).classifier.classify(
        code, "any", prompt_view(["implement a lock-free distributed consensus log now"])
    )
    assert near.complexity == plain.complexity > 1


def test_no_examples_changes_nothing() -> None:
    for text in (SHORT, LONGER, UNRELATED):
        assert classify(table_with([]), text) == classify(offloading_table(), text)
    assert Classifier(ClassifierSettings(), [], default_class=None, model=MODEL)._examples is None


def test_a_template_shared_by_examples_with_the_same_labels_still_matches() -> None:
    """Words many examples share are left out only when those examples disagree on the labels."""
    template = [
        example(f"Summarise support ticket {n} for the weekly report", "summarize", 2) for n in (1, 2, 3, 4)
    ]
    other = [example(f"Prove lemma {n} for the weekly report", "reasoning", 5) for n in (1, 2, 3, 4)]
    index = ExampleIndex(template + other)
    match = index.nearest("summarise support ticket 7 for the weekly report")
    assert match is not None and (match.task_type, match.complexity) == ("summarize", 2)
    assert not match.exact


def test_a_table_whose_example_no_class_serves_is_refused() -> None:
    """The policy's CEL rule keeps this out of the operator's tables; the router refuses any other writer's."""
    table = offloading_table()
    wire = table.to_wire()
    wire["classifier"]["examples"] = [{"text": "bonjour", "taskType": "translate", "complexity": 1}]
    with pytest.raises(ValueError, match="no class has task type 'translate'"):
        RoutingTable.model_validate(wire)


def test_with_no_model_task_served_a_weak_example_does_not_override_the_default() -> None:
    only_translate = TableClass(
        name="translate",
        task_type="translate",
        complexity={"min": 1, "max": 5},
        priority=5,
        latency_objective_seconds=5,
        weights={},
    )
    legal = only_translate.model_copy(update={"name": "legal", "task_type": "legal"})
    settings = ClassifierSettings(
        default_task_type="legal", examples=[example("please translate the following ticket", "translate", 2)]
    )
    clf = Classifier(settings, [only_translate, legal], default_class=None, model=MODEL)
    plain = clf.classify({}, "any", prompt_view(["hello world"]))  # no match: the default task type
    assert (plain.task_type, plain.source) == ("legal", "default")
    weak = clf.classify(
        {}, "any", prompt_view(["please translate the following ticket for our office in lyon, thanks"])
    )
    assert (weak.task_type, weak.source) == ("legal", "default")  # too far to outweigh the default
    near = clf.classify({}, "any", prompt_view(["please translate the following tickets"]))
    assert (near.task_type, near.source) == ("translate", "example")

"""The learned model: the weights file (shipped, corrupt, missing), the packed arithmetic against a plain sum,
and the router refusing to start without it unless the rule classifier was chosen."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import pytest

from zeta_operator.api.policy import DEFAULT_OFFLOAD_CONFIDENCE
from zeta_operator.router import features, model
from zeta_operator.router.__main__ import main, parse_args
from zeta_operator.router.payload import CONTEXT_CHARS, parse_request, prompt_view

from .learned import learned_model, weights_data, weights_file


def test_the_shipped_weights_load_and_give_probabilities() -> None:
    shipped = model.shipped()
    assert shipped.tasks == ("chat", "code", "reasoning", "summarize")
    prediction = shipped.predict(prompt_view(["Write a Python function that reverses a string."]))
    assert math.isclose(sum(prediction.tasks.values()), 1.0)
    assert math.isclose(sum(prediction.complexity), 1.0)
    assert 0.0 <= prediction.simple <= 1.0


def test_the_policy_default_is_the_shipped_calibration() -> None:
    """The CRD's default offloadConfidence is the value calibrated with the shipped weights; retraining
    that moves it must update `DEFAULT_OFFLOAD_CONFIDENCE` (and docs/classifier.md) too."""
    assert model.shipped().offload_confidence == DEFAULT_OFFLOAD_CONFIDENCE


def test_packed_sums_equal_a_plain_weighted_sum() -> None:
    text = {
        "w:lock": [0.5, 2.0, -1.0, 0.0, -3.0, -1.0, 1.0, 2.5, 0.25],
        "p:{": [0, 1.5, 0, 0, 0, 0, 0, 0, 0],
        "i:implement": [0, 0.75, 0, 0, 0, 0, 0, -0.5, 0],
    }
    m = learned_model(structure={"items:2": ([0, 0, 1, 0], [0, 0, 0.5, 0, 0])}, text=text)
    view = prompt_view(["implement a lock { free\n- one\n- two"])
    blocks = features.text_buckets(view.last_user)
    expected = [0.0] * 9
    for token, row in text.items():
        for buckets in blocks:  # each block normalised by its own count
            hits = sum(1 for b in buckets if b in set(features.token_buckets(token)))
            for i, v in enumerate(row):
                expected[i] += hits * v / math.sqrt(len(buckets))
    expected[2] += 1.0
    expected[6] += 0.5
    assert "items:2" in features.structure(view)
    assert m.logits(view) == pytest.approx(expected, abs=1e-9)
    assert m.logits(view) == m.logits(view)  # the token cache gives the same answer


def test_a_word_read_as_instruction_and_as_text_in_any_order_gives_what_a_cold_cache_gives() -> None:
    """A short turn is all instruction (its words' rows are cached together); in a long one only the first and
    last lines are (the rest apart). Whichever a word is read in first, later reads equal a cold start."""
    m = model.shipped()
    ask = "summarise the quarterly report for the board please"
    views = [
        prompt_view([ask]),
        prompt_view(["intro line\n" + "\n".join([ask] * 5) + "\nlast line"]),
        prompt_view(["another opening\n" + ask + "\nand " + ask]),
    ]
    cold = []
    for view in views:
        m.clear_cache()
        cold.append(m.logits(view))
    for order in (views, views[::-1], [views[1], views[0], views[2]]):
        m.clear_cache()
        assert [m.logits(v) for v in order] == [cold[views.index(v)] for v in order]


def test_the_word_caches_stay_within_their_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each cache is cleared when full, so a stream of new words never holds more than TOKEN_CACHE_SIZE, and
    what the model answers does not depend on what was cleared."""
    m = model.shipped()
    m.clear_cache()
    assert m.cached_words() == 0
    monkeypatch.setattr(model, "TOKEN_CACHE_SIZE", 5)
    view = prompt_view(["please tidy this paragraph about seven unusual words"])
    first = m.logits(view)
    for i in range(20):
        m.logits(prompt_view([f"word{i} other{i} more{i}"]))
        assert 0 < m.cached_words() <= 5
    assert m.logits(view) == first


def test_a_long_paste_does_not_drown_the_ask() -> None:
    """The instruction words (first and last line) are normalised by their own count: pasting more
    material under the same ask leaves their share of the logits as it was."""
    m = learned_model(structure={}, text={"i:summarize": [0, 0, 0, 4.0, 0, 0, 0, 0, 0]})
    short = prompt_view(["summarize this\nThe meeting moved to Friday.\nthanks"])
    pasted = "\n".join(f"Line {i} of the minutes: item {i} was discussed." for i in range(60))
    long = prompt_view([f"summarize this\n{pasted}\nthanks"])
    # instruction words: summarize, this, thanks
    assert m.logits(short)[3] == pytest.approx(m.logits(long)[3]) == pytest.approx(4.0 / math.sqrt(3))


def test_the_meaning_block_adds_the_mean_of_the_known_words_rows() -> None:
    """Each known word of the turn counts once (distinct words), a word outside the table counts as the mean
    of its known pieces or not at all, and a turn with no word that counts gets nothing from the block."""
    rows = {"lock": [1.0, 0, -2.0, 0, 0, 0, 0.5, 0, 0], "free": [3.0, 0, 0, 0, 0, 0, -0.5, 0, 1.0]}
    m = learned_model(structure={}, meaning=rows)
    plain = learned_model(structure={})
    view = prompt_view(["implement a lock free lock"])
    added = [a - b for a, b in zip(m.logits(view), plain.logits(view), strict=True)]
    assert added == pytest.approx([2.0, 0, -1.0, 0, 0, 0, 0, 0, 0.5], abs=1e-9)
    unknown = prompt_view(["nothing here is known"])
    assert m.logits(unknown) == plain.logits(unknown)
    compound = prompt_view(["lockfree please"])  # "lockfree": the pieces "lock" and "free"
    added = [a - b for a, b in zip(m.logits(compound), plain.logits(compound), strict=True)]
    assert added == pytest.approx([2.0, 0, -1.0, 0, 0, 0, 0, 0, 0.5], abs=1e-9)


@pytest.mark.parametrize(
    "turns",
    [
        ["fix the race in this worker pool"],  # the instruction is the whole turn: one row per word
        [
            "Summarize for the board:\n\n"
            + "Revenue grew 4% while Lagerkosten fielen stark. " * 40
            + "\nthanks"
        ],
        ["explique-moi le théorème de Bayes", "Bien sûr: P(A|B) = ...", "und jetzt mit Beispiel, bitte"],
        ["qwzx vbnk zzyzx"],  # no word the table knows: the blocks add nothing
    ],
)
def test_the_meaning_lanes_add_exactly_what_the_blocks_give_alone(turns: list[str]) -> None:
    """The meaning rows ride in the n-gram sum, each block in lanes of its own: the logits must be, to the
    last bit, the model without the blocks plus each block's mean over its words (cold and warm caches)."""
    shipped = model.shipped()
    data = json.loads(gzip.decompress(model.WEIGHTS_FILE.read_bytes()))
    data.pop("meaning")
    plain = model.LearnedModel(data, source="without the meaning blocks")
    view = prompt_view(turns)
    turn = features.split_turn(view.last_user)
    expected = plain.logits(view)
    for block, words in zip(shipped._meaning, (turn.words, turn.instruction), strict=True):
        added = block.logits(words)
        if added is not None:
            expected = [z + a for z, a in zip(expected, added, strict=True)]
    shipped.clear_cache()
    assert shipped.logits(view) == expected
    assert shipped.logits(view) == expected


def chat(*messages: tuple[str, str]) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": r, "content": c} for r, c in messages]}).encode()


def test_a_follow_up_reads_the_turns_before_it_as_context() -> None:
    """The user turn before the last one and the assistant turn before the last user turn are read, cut to
    CONTEXT_CHARS, each in a block of its own namespace normalised by its own count; older turns are not."""
    long_reply = "def add(a, b):\n    return a + b\n" + "x " * CONTEXT_CHARS
    view = parse_request(
        chat(
            ("system", "You are a python helper."),
            ("user", "hello"),
            ("user", "write a python function to add numbers"),
            ("assistant", long_reply),
            ("user", "now do it in rust"),
        ),
        "chat",
    ).prompt
    assert view.last_user == "now do it in rust"
    assert view.previous_user == "write a python function to add numbers"
    assert view.previous_assistant == long_reply[:CONTEXT_CHARS]
    # The conversation as it stood at the ask the follow-up continues (for the spill gate), one level deep.
    assert view.earlier is not None and view.earlier.earlier is None
    assert (view.earlier.last_user, view.earlier.previous_user, view.earlier.history) == (
        "write a python function to add numbers",
        "hello",
        1,
    )
    assert view.earlier.system and view.earlier.tokens < view.tokens
    user_words, assistant_words, _ = features.context_words(view)
    assert user_words == ["write", "a", "python", "function", "to", "add", "numbers"]
    assert assistant_words == ["def", "add", "a", "b", "return", "x"]

    m = learned_model(
        structure={},
        text={"u:python": [0, 3.0, 0, 0, 0, 0, 0, 0, 0], "a:def": [0, 2.0, 0, 0, 0, 0, 0, 0, 0]},
    )
    user_weight, assistant_weight, _ = features.CONTEXT_WEIGHTS
    code = user_weight * 3.0 / math.sqrt(7) + assistant_weight * 2.0 / math.sqrt(6)
    assert m.logits(view) == pytest.approx([0, code, 0, 0, 0, 0, 0, 0, 0], abs=1e-9)
    assert m.logits(view) == m.logits(view)  # the context word cache gives the same answer
    p, before = m.predict(view), m.predict(view.earlier)
    assert p.earlier == before.cumulative() and p.spill_simple == min(p.simple, before.simple)
    assert m.predict(view, earlier=False).earlier is None  # a known complexity: the gate will not ask
    # The same words in the last turn itself are not context; a single turn has none.
    assert m.logits(prompt_view(["write a python function: def"])) == [0.0] * 9
    alone = parse_request(chat(("system", "python def"), ("user", "now do it in rust")), "chat").prompt
    assert (alone.previous_user, alone.previous_assistant, alone.earlier) == ("", "", None)
    assert m.logits(alone) == [0.0] * 9  # a system prompt is a block of its own namespace, not u: or a:


def test_the_system_prompt_is_read_as_context_of_its_own() -> None:
    """An operator's system prompt often holds the task ("Translate each ticket into English") while the user
    sends only material: its distinct words, cut to CONTEXT_CHARS, are a context block of their own (``s:``,
    at `features.CONTEXT_WEIGHTS`' weight), in a single-turn request too and in the ask a follow-up continues."""
    system = "Translate each support ticket into English. Translate " + "x " * CONTEXT_CHARS
    view = parse_request(
        chat(("system", system), ("developer", "keep it short"), ("user", "Mein Drucker druckt nicht.")),
        "chat",
    ).prompt
    assert view.system_prompt == (system + "\nkeep it short")[:CONTEXT_CHARS]
    assert (view.previous_user, view.previous_assistant) == ("", "")
    system_words = features.context_words(view)[2]
    assert (
        system_words[:5] == ["translate", "each", "support", "ticket", "into"] and "keep" not in system_words
    )
    m = learned_model(structure={}, text={"s:translate": [0, 0, 0, 4.0, 0, 0, 0, 0, 0]})
    summarize = features.CONTEXT_WEIGHTS[2] * 4.0 / math.sqrt(len(system_words))
    assert m.logits(view) == pytest.approx([0, 0, 0, summarize, 0, 0, 0, 0, 0], abs=1e-9)
    assert m.logits(view) == m.logits(view)  # through the context word cache
    # The same word in the user turn, or in no system prompt, is not read as the operator's.
    assert m.logits(parse_request(chat(("user", "translate this")), "chat").prompt) == [0.0] * 9
    follow_up = parse_request(
        chat(("system", "translate tickets"), ("user", "a"), ("assistant", "b"), ("user", "c")), "chat"
    ).prompt
    assert follow_up.earlier is not None and follow_up.earlier.system_prompt == "translate tickets"


def test_the_shape_of_the_ask_counts_its_clauses_against_the_material_after_it() -> None:
    """The first paragraph is the ask: its clauses count, the pasted lines after it do not."""
    pasted = "\n".join(f"row_{i}, value, other" for i in range(30))
    view = prompt_view([f"Write a parser, a lexer and a REPL, with tests and docs\n\n{pasted}"])
    names = features.ask_shape(view, view.last_user.split("\n"))
    assert "headclauses:2" in names  # two commas in the ask; the 60 in the pasted rows are not counted
    assert "headands:3" in names  # "and", "with", "and"
    assert "identifiers:4" in names  # 30 snake_case names: the top bin
    assert "head*rest:1:2" in names  # a 55-character ask, about 600 characters after it
    assert set(names) <= set(features.all_structure_names())
    assert set(features.ask_shape(prompt_view(["hi"]), ["hi"])) <= set(features.all_structure_names())


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not a gzip-compressed JSON"),
        (b"\x1f\x8b\x08\x00garbage", "not a gzip-compressed JSON"),
        (gzip.compress(b'{"format": "something-else"}'), "format 'something-else'"),
        (weights_file({**weights_data(structure={}), "features": "zeta-features-0"}), "retrain"),
        (weights_file({**weights_data(structure={}), "text": "AAAAAA=="}), "text weights hold 2 values"),
        (weights_file({k: v for k, v in weights_data(structure={}).items() if k != "bias"}), "KeyError"),
        (
            weights_file(
                {
                    **weights_data(structure={}),
                    "meaning": {"words": "a\nb", "turn": {"rows": "AAAAAA==", "scale": [1.0] * 9}},
                }
            ),
            "meaning rows hold 2 values",
        ),
    ],
    ids=[
        "empty",
        "not-gzip",
        "other-format",
        "other-features",
        "short-weights",
        "no-bias",
        "short-meaning",
    ],  # stable for xdist
)
def test_a_corrupt_weights_file_is_refused_with_the_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(model.ModelError) as err:
        model.parse(raw, source="weights.json.gz")
    assert reason in str(err.value)
    assert "weights.json.gz" in str(err.value)


def test_the_router_refuses_to_start_without_usable_weights(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "table.json"
    for weights in (tmp_path / "missing.json.gz", tmp_path / "truncated.json.gz"):
        if weights.name.startswith("truncated"):
            weights.write_bytes(model.WEIGHTS_FILE.read_bytes()[:1000])
        with pytest.raises(SystemExit) as exit_:
            main(["--table-file", str(table), "--classifier-weights", str(weights)])
        assert exit_.value.code == 2
        message = capsys.readouterr().err
        assert str(weights) in message
        assert "not starting" in message
        assert "--classifier rules" in message


def test_the_rule_classifier_is_an_explicit_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_args(["--table-file", "t.json"])[0].classifier == "learned"
    monkeypatch.setenv("ZETA_ROUTER_CLASSIFIER", "rules")
    assert parse_args(["--table-file", "t.json"])[0].classifier == "rules"


def test_weights_file_content_is_canonical_json() -> None:
    """The shipped file decompresses to sorted, compact JSON (what training writes: reproducible bytes)."""
    payload = gzip.decompress(model.WEIGHTS_FILE.read_bytes())
    assert payload == json.dumps(json.loads(payload), sort_keys=True, separators=(",", ":")).encode()

"""The evaluation's table by the length of the last user turn (``python -m zeta_dev.classifier.evaluate``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zeta_dev.classifier import corpus, evaluate


def _request(text: str, complexity: int) -> corpus.Request:
    row = {
        "id": "r", "group": "g", "source": "test", "task": "reasoning", "complexity": complexity,
        "messages": [{"role": "user", "content": text}],
    }  # fmt: skip
    return corpus._request(row, where="test")


def _outcome(simple_probability: float) -> evaluate.Outcome:
    complexity = 1 if simple_probability >= 0.5 else 3
    return evaluate.Outcome("reasoning", complexity, simple_probability, 0.9)


def test_each_request_counts_in_the_bucket_of_its_length_and_the_gate_is_judged_there() -> None:
    short_complex = _request("how many trailing zeros in 100!", 3)
    short_doubtful = _request("expected coin flips to get two heads in a row", 3)
    short_simple = _request("what is 15% of 80?", 1)
    long_complex = _request("Work out the schedule. " + "The crew rests after each shift. " * 20, 4)
    rows = evaluate.by_length(
        [short_complex, short_doubtful, short_simple, long_complex],
        [_outcome(0.99), _outcome(0.9), _outcome(0.97), _outcome(0.2)],
        gate=0.95,
    )
    by_label = {row.split(" | ")[0].strip("| "): row.split(" | ") for row in rows[2:]}
    assert set(by_label) == {"under 100", "400-1,499"}  # no row for a bucket without requests
    short, long_ = by_label["under 100"], by_label["400-1,499"]
    assert short[1:3] == ["3", "2"]  # requests, complex
    assert short[5:7] == ["100.0%", "50.0%"]  # both complex asks labelled simple, one past the gate
    assert short[7].rstrip(" |") == "100.0%"  # and so did the simple one
    assert long_[1:3] == ["1", "1"] and long_[6] == "0.0%"


def test_the_gate_is_judged_on_what_the_router_compares_for_a_follow_up() -> None:
    """A follow-up's own P(simple) may be high while the ask it follows was in doubt: the router keeps it up
    (`model.Prediction.spill_simple`), so the evaluation counts it as kept, not spilled."""
    follow_up = _request("now prove it", 3)
    own_only = evaluate.Outcome("reasoning", 1, 0.99, 0.9)
    with_earlier = evaluate.Outcome("reasoning", 1, 0.99, 0.9, spill_probability=0.6)
    assert evaluate.score([follow_up], [own_only], gate=0.95).complex_to_simple_gated == 1.0
    kept = evaluate.score([follow_up], [with_earlier], gate=0.95)
    assert kept.complex_to_simple_gated == 0.0
    assert kept.complex_to_simple == 1.0  # labelled simple all the same: the label is the follow-up's own


def test_unseen_writers_are_scored_from_another_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--unseen --corpus DIR``: files written but not merged (dev/corpus/incoming) are scored where they are,
    each source and then all together, by the shipped weights."""
    rows = [
        {"id": f"x1-{n}", "group": f"x1-g{n}", "source": "x1", "lang": "en", "task": "code", "complexity": 2,
         "messages": [{"role": "user", "content": f"write a python function that returns {n} squared"}]}
        for n in range(3)
    ]  # fmt: skip
    rows.append({**rows[0], "id": "x2-0", "group": "x2-g0", "source": "x2", "task": "chat", "complexity": 1})
    (tmp_path / "x.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    evaluate.main(["--unseen", "x1,x2", "--corpus", str(tmp_path)])
    table = capsys.readouterr().out
    assert "| x1 | 3 |" in table and "| x2 | 1 |" in table and "| x1 + x2 | 4 |" in table


def test_the_timed_decision_protects_the_ceilings_of_the_sample_fleet() -> None:
    """The cost benchmark times the classification and the spill gate's floor as the sample policy and fleet
    configure them: simple chat and summaries are the 4B's (ceiling 2), code is the 7B coder's (4) whatever
    its class's range, reasoning the 14B's (5)."""
    ceilings = evaluate.sample_protected_ceilings(evaluate.sample_spec())
    assert ceilings == {"chat-simple": 2, "summarize": 2, "code-simple": 4, "code-complex": 4, "reasoning": 5}


def test_without_the_leave_one_writer_out_run_its_section_is_kept_only_for_the_same_corpus() -> None:
    settings = evaluate.training_settings()
    previous = "\n\n".join(
        [
            "# Request classifier: held-out evaluation",
            "Written by ... (corpus fingerprint `abc123`), temperatures ...",
            "## Held-out test split\n\n| figures |",
            f"{evaluate.LOWO_HEADING}\n\n{settings}\n\n| w1 | 80% |\n",
        ]
    )
    section = [evaluate.LOWO_HEADING, "", settings, "", "| w1 | 80% |", ""]
    assert evaluate.kept_section(previous, "abc123") == section
    assert evaluate.kept_section(previous, "other") == []  # retrained on another corpus: no longer true
    assert evaluate.kept_section(previous.replace(evaluate.LOWO_HEADING, "## Something else"), "abc123") == []
    assert evaluate.kept_section("", "abc123") == []


def test_a_kept_section_of_other_training_settings_says_so_until_it_is_recomputed() -> None:
    """Same corpus, other training code: the figures are kept (they take hours) under a note naming the
    settings they are not of; keeping it again replaces the note instead of stacking a second one."""
    old = "\n\n".join(
        [
            "# Request classifier: held-out evaluation",
            "Written by ... (corpus fingerprint `abc123`), temperatures ...",
            f"{evaluate.LOWO_HEADING}\n\nTraining: `Hyper(task_c=4.0)`, features `f`.\n\n| w1 | 80% |\n",
        ]
    )
    kept = evaluate.kept_section(old, "abc123")
    assert kept[0] == evaluate.LOWO_HEADING and kept[2].startswith(evaluate.STALE_NOTE)
    assert evaluate.training_label() in kept[2]
    assert kept[3:] == ["", "Training: `Hyper(task_c=4.0)`, features `f`.", "", "| w1 | 80% |", ""]
    again = evaluate.kept_section(old.split(evaluate.LOWO_HEADING)[0] + "\n".join(kept), "abc123")
    assert again == kept

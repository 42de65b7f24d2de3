"""Spec problems the CRD schema cannot see because they span objects: each kind is reported, naming what is at
fault, and the shipped samples are valid."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from zeta_operator.api.backend import ModelBackendSpec
from zeta_operator.api.policy import QUERY_PLACEHOLDERS, RoutingPolicySpec
from zeta_operator.operator.validation import validate

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"


def load(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load((SAMPLES / f"{name}.yaml").read_text())["spec"]
    return spec


POLICY = load("routingpolicy")
BACKENDS = {name: load(name) for name in ("general-4b", "coder-7b", "large-14b")}


def problems(
    policy: dict[str, Any] | None = None, backends: dict[str, dict[str, Any]] | None = None
) -> list[str]:
    return validate(
        RoutingPolicySpec.model_validate(policy if policy is not None else POLICY),
        {
            n: ModelBackendSpec.model_validate(b)
            for n, b in (backends if backends is not None else BACKENDS).items()
        },
    )


def policy_with(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(POLICY)
    spec.update(changes)
    return spec


def classes_with(name: str, **changes: Any) -> list[dict[str, Any]]:
    classes = copy.deepcopy(POLICY["classes"])
    for c in classes:
        if c["name"] == name:
            c.update(changes)
    return classes


def test_the_samples_are_valid() -> None:
    assert problems() == []


def test_a_class_naming_a_backend_that_is_not_selected_or_missing() -> None:
    missing = {n: b for n, b in BACKENDS.items() if n != "coder-7b"}
    found = problems(backends=missing)
    expected = (
        "class code-simple: preferred backend coder-7b is not selected (not in backends.names nor matched by "
        "backends.selector) or does not exist"
    )
    assert expected in found
    assert any(p.startswith("class chat-simple: fallback backend coder-7b is not selected") for p in found)


def test_a_name_listed_in_backends_names_that_does_not_exist() -> None:
    named = policy_with(backends={"names": ["general-4b", "coder-7b", "large-14b"]})
    found = problems(named, {n: b for n, b in BACKENDS.items() if n != "large-14b"})
    assert (
        "class reasoning: preferred backend large-14b is listed in backends.names but does not exist" in found
    )


def test_a_name_missing_from_backends_names() -> None:
    named = policy_with(backends={"names": ["general-4b", "coder-7b"]})
    found = problems(named, {n: b for n, b in BACKENDS.items() if n != "large-14b"})
    assert (
        "class summarize: fallback backend large-14b is not selected by the policy (not in backends.names)"
        in found
    )


def test_a_preferred_backend_above_its_complexity_ceiling() -> None:
    found = problems(
        policy_with(classes=classes_with("code-complex", preferred=["general-4b"], fallbacks=[]))
    )
    assert found == [
        "class code-complex: preferred backend general-4b cannot serve it: complexity ceiling 2 < class max 4",
        "class code-complex: no capable backend for task type code up to complexity 4 among its preferred and "
        "fallbacks (capable selected backends: coder-7b, large-14b)",
    ]


def test_a_preferred_backend_without_the_task_type() -> None:
    found = problems(policy_with(classes=classes_with("summarize", preferred=["coder-7b"])))
    assert found == [
        "class summarize: preferred backend coder-7b cannot serve it: task type summarize missing from its tasks "
        "[code, chat]"
    ]


def test_an_incapable_fallback_is_filtered_not_reported() -> None:
    # Capability is a filter: listing a fallback that cannot serve a class is allowed, it just never gets a share.
    assert problems(policy_with(classes=classes_with("summarize", fallbacks=["large-14b", "coder-7b"]))) == []


def test_a_class_with_no_capable_backend_at_all() -> None:
    spec = policy_with(
        classes=classes_with("reasoning", complexity={"min": 3, "max": 5}, preferred=["coder-7b"])
    )
    found = problems(spec, {n: b for n, b in BACKENDS.items() if n != "large-14b"})
    assert (
        "class reasoning: no capable backend for task type reasoning up to complexity 5 among its preferred and "
        "fallbacks" in found
    )


def test_task_types_no_class_serves() -> None:
    classifier = {
        "defaultTaskType": "translate",
        "modelAliases": [
            {"alias": "zeta-code", "taskType": "code"},
            {"alias": "zeta-sql", "taskType": "sql"},
        ],
        "rules": [
            {"taskType": "summarize", "keywords": ["tl;dr"]},
            {"taskType": "poetry", "keywords": ["poem"]},
        ],
    }
    assert problems(policy_with(classifier=classifier)) == [
        "classifier.defaultTaskType translate: no class serves task type translate",
        "classifier.modelAliases[1] (zeta-sql): no class serves task type sql",
        "classifier.rules[1]: no class serves task type poetry",
    ]


def test_the_builtin_default_task_type_is_fine_when_a_default_class_catches_the_rest() -> None:
    code_only = [c for c in POLICY["classes"] if c["taskType"] == "code"]
    spec = policy_with(classes=code_only, defaultClass="code-simple", classifier={})
    assert problems(spec) == []
    spec.pop("defaultClass")
    assert problems(spec) == ["classifier.defaultTaskType chat: no class serves task type chat"]


def test_a_default_class_that_is_not_a_class() -> None:
    # The model (and CEL) reject this at apply time; validate still says so for specs built in code.
    policy = RoutingPolicySpec.model_validate(POLICY).model_copy(update={"default_class": "nope"})
    specs = {n: ModelBackendSpec.model_validate(b) for n, b in BACKENDS.items()}
    assert validate(policy, specs) == ["defaultClass nope is not one of the classes"]


@pytest.mark.parametrize("known", QUERY_PLACEHOLDERS)
def test_every_known_placeholder_is_accepted(known: str) -> None:
    spec = policy_with(
        prometheus={"queries": {"cpu": f'max by (pod) (cpu{{namespace="x"}}) + 0 * {{{known}}}'}}
    )
    assert problems(spec) == []


def test_unknown_placeholders_in_policy_and_backend_queries() -> None:
    spec = policy_with(
        prometheus={
            "queries": {"queueDepth": 'sum by (pod) (vllm:num_requests_waiting{pod=~"{pods}", x="{podz}"})'}
        }
    )
    backends = copy.deepcopy(BACKENDS)
    backends["coder-7b"]["metrics"] = {
        "queries": {
            "kvCache": 'max by (pod) (vllm:kv_cache_usage_perc{namespace="{ns}"}[{window}] > {limit})'
        }
    }
    known = ", ".join("{" + p + "}" for p in QUERY_PLACEHOLDERS)
    assert problems(spec, backends) == [
        f"prometheus.queries.queueDepth: unknown placeholder {{podz}} (known: {known})",
        f"backend coder-7b: metrics.queries.kvCache: unknown placeholder {{limit}} (known: {known})",
        f"backend coder-7b: metrics.queries.kvCache: unknown placeholder {{ns}} (known: {known})",
    ]


def test_label_matchers_are_not_placeholders() -> None:
    query = 'sum by (pod) (rate(x{namespace="{namespace}", pod=~"{pods}", code!~"5.."}[{window}]))'
    assert problems(policy_with(prometheus={"queries": {"cpu": query}})) == []

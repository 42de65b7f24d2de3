"""Problems in a RoutingPolicy that its CRD schema cannot catch, because they involve other objects.

`validate` is pure: the operator resolves the policy's backends and passes their specs in. Every problem is
one human-readable line naming the class, backend, field or placeholder at fault; an empty list means valid.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..api.backend import ModelBackendSpec, SignalQueries
from ..api.policy import QUERY_PLACEHOLDERS, RoutingPolicySpec, TaskClass
from .promql import placeholders


def validate(policy: RoutingPolicySpec, backends: Mapping[str, ModelBackendSpec]) -> list[str]:
    """Every cross-object problem of ``policy`` given the backends it selects (name -> spec), in spec order.

    Reported: a class naming a backend that is not selected or does not exist; a preferred backend that cannot
    serve its class (task type missing, or complexity ceiling below the class's max); a class with no capable
    backend among those it names; a defaultClass that is not a class; a default task type, model alias or
    keyword rule whose task type no class serves; a PromQL template (the policy's or a backend's) with an
    unknown ``{placeholder}``.
    """
    problems: list[str] = []
    for task_class in policy.classes:
        problems.extend(_class_problems(task_class, policy, backends))
    problems.extend(_classifier_problems(policy))
    problems.extend(_template_problems("prometheus.queries", policy.prometheus.queries))
    for name in sorted(backends):
        problems.extend(
            _template_problems(f"backend {name}: metrics.queries", backends[name].metrics.queries)
        )
    return problems


def _class_problems(
    task_class: TaskClass, policy: RoutingPolicySpec, backends: Mapping[str, ModelBackendSpec]
) -> list[str]:
    problems: list[str] = []
    where = f"class {task_class.name}"
    named = [("preferred", n) for n in task_class.preferred] + [
        ("fallback", n) for n in task_class.fallbacks or []
    ]
    any_capable = False
    for role, name in named:
        spec = backends.get(name)
        if spec is None:
            problems.append(f"{where}: {role} backend {name} {_why_missing(name, policy)}")
            continue
        why = incapability(spec, task_class)
        if why is None:
            any_capable = True
        elif role == "preferred":
            problems.append(f"{where}: preferred backend {name} cannot serve it: {why}")
    if not any_capable:
        others = sorted(n for n, spec in backends.items() if incapability(spec, task_class) is None)
        hint = f" (capable selected backends: {', '.join(others)})" if others else ""
        problems.append(
            f"{where}: no capable backend for task type {task_class.task_type} up to complexity "
            f"{task_class.complexity.max} among its preferred and fallbacks{hint}"
        )
    return problems


def incapability(spec: ModelBackendSpec, task_class: TaskClass) -> str | None:
    """Why the backend cannot serve the class, or None when it can."""
    caps = spec.capabilities
    why = []
    if task_class.task_type not in caps.tasks:
        why.append(f"task type {task_class.task_type} missing from its tasks [{', '.join(caps.tasks)}]")
    if caps.max_complexity < task_class.complexity.max:
        why.append(f"complexity ceiling {caps.max_complexity} < class max {task_class.complexity.max}")
    return "; ".join(why) or None


def _why_missing(name: str, policy: RoutingPolicySpec) -> str:
    selection = policy.backends
    listed = selection.names or []
    if name in listed:
        return "is listed in backends.names but does not exist"
    if selection.selector is None:
        return "is not selected by the policy (not in backends.names)"
    return "is not selected (not in backends.names nor matched by backends.selector) or does not exist"


def _classifier_problems(policy: RoutingPolicySpec) -> list[str]:
    problems: list[str] = []
    class_names = {c.name for c in policy.classes}
    served = {c.task_type for c in policy.classes}
    if policy.default_class is not None and policy.default_class not in class_names:
        problems.append(f"defaultClass {policy.default_class} is not one of the classes")
    classifier = policy.classifier
    # The built-in default task type ("chat") is only a problem when nothing else catches unmatched requests.
    explicit = "default_task_type" in classifier.model_fields_set
    if classifier.default_task_type not in served and (explicit or policy.default_class is None):
        problems.append(
            f"classifier.defaultTaskType {classifier.default_task_type}: no class serves task type "
            f"{classifier.default_task_type}"
        )
    for i, alias in enumerate(classifier.model_aliases):
        if alias.task_type not in served:
            problems.append(
                f"classifier.modelAliases[{i}] ({alias.alias}): no class serves task type {alias.task_type}"
            )
    for i, rule in enumerate(classifier.rules):
        if rule.task_type not in served:
            problems.append(f"classifier.rules[{i}]: no class serves task type {rule.task_type}")
    return problems


def _template_problems(where: str, queries: SignalQueries) -> list[str]:
    problems: list[str] = []
    known = set(QUERY_PLACEHOLDERS)
    for field_name, info in SignalQueries.model_fields.items():
        template = getattr(queries, field_name)
        if not template:
            continue
        signal = info.alias or field_name
        for unknown in sorted(placeholders(template) - known):
            problems.append(
                f"{where}.{signal}: unknown placeholder {{{unknown}}} "
                f"(known: {', '.join('{' + p + '}' for p in QUERY_PLACEHOLDERS)})"
            )
    return problems

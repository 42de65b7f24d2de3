"""Generated custom resources through a real operator process (its ServiceAccount token, the shipped RBAC):
does it end each case as the in-process judgement says, and is every table it writes valid and non-empty?"""

from __future__ import annotations

import contextlib
import functools
import uuid
from dataclasses import dataclass
from pathlib import Path

import kubernetes
from kubernetes.client import ApiException

from zeta_dev.localcluster.cluster import Cluster
from zeta_dev.localcluster.fleet import policy_status, read_table, start_operator
from zeta_dev.waiting import eventually
from zeta_operator.api.common import GROUP, VERSION

from .resources import Case, Verdict, apply_dry_run, for_the_operator, judge, operator_outcome, table_problems

DEADLINE = 90.0


@dataclass
class Agreement:
    case: Case
    expected: str
    actual: str | None
    problem: str = ""
    first: str | None = None
    """The operator's first verdict (differs from ``actual`` when a transient InvalidSpec came first)."""


def run_through_operator(
    cluster: Cluster, sample: list[tuple[Case, Verdict]], workdir: Path
) -> list[Agreement]:
    """Each case in turn in one namespace watched by one operator: create, wait for its verdict, delete."""
    if not sample:
        return []
    api = cluster.api_client()
    core = kubernetes.client.CoreV1Api(api)
    custom = kubernetes.client.CustomObjectsApi(api)
    namespace = f"fuzz-op-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    operator = start_operator(cluster, namespace, workdir)
    out = []
    try:
        for i, (case, _) in enumerate(sample):
            real = for_the_operator(case, i)
            backends, policy, rejections = apply_dry_run(api, namespace, real)
            expected = judge(real, policy, backends, rejections).outcome
            out.append(_one(cluster, custom, namespace, real, expected, i))
    finally:
        operator.process.stop()
        with contextlib.suppress(ApiException):
            core.delete_namespace(namespace)
    return out


def _one(
    cluster: Cluster,
    custom: kubernetes.client.CustomObjectsApi,
    namespace: str,
    case: Case,
    expected: str,
    i: int,
) -> Agreement:
    name = f"fuzz-{i}"
    created: list[tuple[str, str]] = []
    try:
        for doc in case.documents(policy_name=name):
            plural = "modelbackends" if doc["kind"] == "ModelBackend" else "routingpolicies"
            try:
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, doc, field_validation="Strict"
                )
                created.append((plural, doc["metadata"]["name"]))
            except ApiException as e:
                if plural == "routingpolicies":
                    return Agreement(
                        case, expected, "rejected", f"rejected for real after a dry run: {e.reason}"
                    )
        if expected == "rejected":
            return Agreement(case, expected, "rejected", "accepted for real, rejected by the dry run")
        seen: list[str] = []

        def settled() -> str | None:
            outcome = operator_outcome(policy_status(cluster, namespace, name))
            if outcome is not None and outcome not in seen:
                seen.append(outcome)
            return outcome if outcome == expected else None

        try:
            actual = eventually(
                settled, timeout=DEADLINE, what=f"the operator's verdict {expected} on {name}"
            )
        except AssertionError:
            status = policy_status(cluster, namespace, name)
            return Agreement(
                case,
                expected,
                seen[-1] if seen else None,
                f"expected {expected}, the operator says {seen}: {status}",
            )
        first = seen[0] if seen else actual
        if actual == "table":
            table = read_table(cluster, namespace, f"fuzz-table-{i}")
            if table is None:
                return Agreement(case, expected, actual, "Ready with no table ConfigMap")
            problems = table_problems(table)
            if problems:
                return Agreement(case, expected, actual, "written table: " + "; ".join(problems))
        return Agreement(case, expected, actual, first=first)
    finally:
        for plural, obj in reversed(created):
            with contextlib.suppress(ApiException):
                custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, obj)
        for plural, obj in created:
            eventually(
                functools.partial(_gone, custom, namespace, plural, obj),
                timeout=DEADLINE,
                what=f"{plural}/{obj} deleted",
            )


def _gone(custom: kubernetes.client.CustomObjectsApi, namespace: str, plural: str, name: str) -> bool:
    try:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    except ApiException as e:
        return e.status == 404
    return False

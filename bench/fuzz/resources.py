"""Custom resources generated from the CRDs' own schemas, applied to the real apiserver, then judged the way
the operator judges them.

A case is one RoutingPolicy and one to four ModelBackends, drawn three ways:

- **schema**: every spec drawn from its CRD's structural schema (``openAPIV3Schema``: types, ranges, patterns,
  enums, sizes; not the CEL rules, so some break those). Names rarely line up across objects.
- **coherent**: the same draws, then the policy's names, task types and classifier made to refer to the drawn
  backends, so that many pass the operator's cross-object validation and produce a routing table.
- **mutated**: a coherent case with one near-valid change (a field removed, a value of another type, a
  number past its bound, a string off its pattern, an unknown field, or a rule-level change such as inverted
  watermarks or a duplicated class name).

Each object goes to the apiserver (server-side dry run: defaulting, schema and CEL validation, admission, the
stored object back, nothing persisted). A case then ends one of three ways: the policy is **rejected** at
apply time; or it is accepted and the operator's own checks report it **invalid** (the pydantic models of
`zeta_operator.api` and `operator.validation.validate`, on the stored objects, exactly as `PolicyLoop`
parses them); or they pass and the operator's own table builder makes a **table** from them (endpoints as
discovery would give them; `weights.decide` on no readings and again on drawn readings, NaN and Inf
included). A table must be valid (`RoutingTable` round trip with its hash), non-empty (every class has
weights summing to 1, capable backends only) and loadable by the router (`TableSnapshot.build`). Anything
else is a finding, as is drift between the CRD schema and the models.

hypothesis-jsonschema would be the natural generator, but its latest release (0.23.1) fails with current
hypothesis (``'many' object has no attribute 'more'``); the CRDs use a small subset of JSON schema, mapped here.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pydantic
import yaml
from hypothesis import strategies as st
from kubernetes.client import ApiException

from zeta_operator.api.backend import ModelBackendSpec
from zeta_operator.api.common import GROUP, VERSION
from zeta_operator.api.policy import RoutingPolicySpec
from zeta_operator.api.table import RoutingTable
from zeta_operator.operator.controller import PolicyLoop, SelectedBackend, select_backends
from zeta_operator.operator.discovery import Endpoint
from zeta_operator.operator.validation import validate
from zeta_operator.operator.weights import BackendInput, Reading, decide
from zeta_operator.router.model import shipped
from zeta_operator.router.snapshot import TableSnapshot

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
POOL = ("general-4b", "coder-7b", "large-14b", "tiny")
"""Backend names a case draws from (a schema-drawn policy names others too)."""
NOW = 1_800_000_000.0


# ---------------------------------------------------------------------------------------------- schemas


def spec_schema(plural: str) -> dict[str, Any]:
    """The ``spec`` part of a CRD's structural schema, as in crds/."""
    crd = yaml.safe_load((CRD_DIR / f"{GROUP}_{plural}.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schema


def from_schema(node: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid by a structural schema node (the subset the CRDs use); CEL rules are not considered."""
    if "enum" in node:
        return st.sampled_from(node["enum"])
    kind = node.get("type")
    if kind == "object":
        return _object(node)
    if kind == "array":
        return st.lists(
            from_schema(node["items"]),
            min_size=node.get("minItems", 0),
            max_size=min(node.get("maxItems", 4), 4),
        )
    if kind == "string":
        return _string(node)
    if kind == "integer":
        return st.integers(node.get("minimum"), node.get("maximum"))
    if kind == "number":
        return st.floats(
            node.get("minimum"), node.get("maximum"), exclude_min=bool(node.get("exclusiveMinimum")),
            allow_nan=False, allow_infinity=False,
        )  # fmt: skip
    if kind == "boolean":
        return st.booleans()
    raise ValueError(f"schema node not handled: {node}")


def _object(node: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    properties = node.get("properties")
    if properties is None:  # a map: additionalProperties
        keys = st.from_regex(r"[a-z][a-z0-9./-]{0,20}", fullmatch=True)
        return st.dictionaries(
            keys,
            from_schema(node["additionalProperties"]),
            min_size=node.get("minProperties", 0),
            max_size=min(node.get("maxProperties", 3), 3),
        )
    required = set(node.get("required", ()))
    return st.fixed_dictionaries(
        {k: from_schema(v) for k, v in properties.items() if k in required},
        optional={k: from_schema(v) for k, v in properties.items() if k not in required},
    )


def _string(node: Mapping[str, Any]) -> st.SearchStrategy[str]:
    lo, hi = node.get("minLength", 0), min(node.get("maxLength", 40), 80)
    if "pattern" in node:
        return st.from_regex(node["pattern"], fullmatch=True).filter(lambda s: lo <= len(s) <= hi)
    return st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=lo, max_size=hi)


BACKEND_SCHEMA = spec_schema("modelbackends")
POLICY_SCHEMA = spec_schema("routingpolicies")
BACKEND_SPECS = from_schema(BACKEND_SCHEMA)
POLICY_SPECS = from_schema(POLICY_SCHEMA)
"""Built once: hypothesis computes a strategy's properties on its first draw."""


# ---------------------------------------------------------------------------------------------- cases


@dataclass
class Case:
    mode: str
    backends: dict[str, dict[str, Any]]
    """metadata.name -> spec."""
    labels: dict[str, dict[str, str]]
    policy: dict[str, Any]
    mutation: str = ""
    readings: list[dict[str, dict[str, Reading]]] = field(default_factory=list)
    """Per extra control cycle: backend -> signal -> reading."""

    def documents(self, *, policy_name: str = "fuzz") -> list[dict[str, Any]]:
        """The objects, for a reproducer (``kubectl apply -f``)."""
        docs = [
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelBackend",
             "metadata": {"name": n, "labels": self.labels.get(n, {})}, "spec": s}
            for n, s in self.backends.items()
        ]  # fmt: skip
        docs.append(
            {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RoutingPolicy", "metadata": {"name": policy_name},
             "spec": self.policy}
        )  # fmt: skip
        return docs


_READING = st.one_of(
    st.builds(Reading, value=st.floats(0, 50) | st.sampled_from([math.nan, math.inf, -1.0, 0.0]), state=st.just("ok")),
    st.builds(Reading, value=st.none(), state=st.sampled_from(["no-data", "error"])),
)  # fmt: skip
_SIGNALS = ("cpu", "memory", "queueDepth", "kvCache", "errorRate", "running")


@st.composite
def _readings(draw: st.DrawFn, names: list[str]) -> dict[str, dict[str, Reading]]:
    return {n: draw(st.dictionaries(st.sampled_from(_SIGNALS), _READING, max_size=4)) for n in names}


@st.composite
def _drawn(draw: st.DrawFn) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, str]], dict[str, Any]]:
    names = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True))
    backends = {n: draw(BACKEND_SPECS) for n in names}
    labels = {n: draw(st.sampled_from([{}, {"zeta.dev/fleet": "fuzz"}])) for n in names}
    return backends, labels, draw(POLICY_SPECS)


def _cohere(draw: st.DrawFn, backends: dict[str, dict[str, Any]], policy: dict[str, Any]) -> dict[str, Any]:
    """Make the policy refer to the drawn backends: names, preferred and fallbacks, task types served."""
    policy = copy.deepcopy(policy)
    for spec in backends.values():  # exactly one endpoint kind, as the CEL rule wants
        endpoints = spec["endpoints"]
        kinds = [k for k in ("service", "selector", "static") if k in endpoints]
        if len(kinds) != 1:
            keep = draw(st.sampled_from(kinds)) if kinds else "static"
            for k in kinds:
                if k != keep:
                    del endpoints[k]
            if not kinds:
                endpoints["static"] = ["http://127.0.0.1:8000"]
    names = sorted(backends)
    policy["backends"] = draw(
        st.sampled_from([{"names": names}, {"selector": {"matchLabels": {"zeta.dev/fleet": "fuzz"}}},
                         {"names": names[:1], "selector": {"matchLabels": {"zeta.dev/fleet": "fuzz"}}}])
    )  # fmt: skip
    served = sorted({t for b in backends.values() for t in b["capabilities"]["tasks"]})
    seen: set[str] = set()
    for c in policy["classes"]:
        while c["name"] in seen:
            c["name"] = (c["name"] + "x")[-63:]
        seen.add(c["name"])
        c["taskType"] = task = draw(st.sampled_from(served))
        ceilings = {
            n: b["capabilities"]["maxComplexity"]
            for n, b in backends.items()
            if task in b["capabilities"]["tasks"]
        }
        complexity = c.setdefault("complexity", {})
        top = min(complexity.get("max", 5), max(ceilings.values()))
        complexity["max"], complexity["min"] = top, min(complexity.get("min", 1), top)
        capable = sorted(n for n, ceiling in ceilings.items() if ceiling >= top)
        preferred = draw(st.lists(st.sampled_from(capable), min_size=1, max_size=len(capable), unique=True))
        c["preferred"] = preferred
        rest = [n for n in names if n not in preferred]
        if rest and draw(st.booleans()):
            c["fallbacks"] = draw(st.lists(st.sampled_from(rest), max_size=len(rest), unique=True))
        else:
            c.pop("fallbacks", None)
    if "defaultClass" in policy:
        policy["defaultClass"] = draw(st.sampled_from([c["name"] for c in policy["classes"]]))
    task_types = [c["taskType"] for c in policy["classes"]]
    classifier = policy.setdefault("classifier", {})
    classifier["defaultTaskType"] = draw(st.sampled_from(task_types))
    for item in classifier.get("modelAliases", []) + classifier.get("rules", []):
        item["taskType"] = draw(st.sampled_from(task_types))
    adaptation = policy.get("adaptation", {})
    if "staleAfter" in adaptation or "interval" in adaptation:
        adaptation["interval"], adaptation["staleAfter"] = "5s", "60s"
    offload = policy.get("offload", {})
    if "lowWatermark" in offload or "highWatermark" in offload:
        offload["lowWatermark"], offload["highWatermark"] = 0.6, 0.85
    return policy


# A value of another type for any schema type, and values near the edges.
_OTHER_TYPE = st.sampled_from([None, True, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}])
_EDGY = st.sampled_from(
    [0, -1, 2**31, 2**63, 10**20, 0.0, -0.0, 1e-12, 1e308, "0s", "0ms", "-1s", "5x", "1h1h", "99999999999h",
     "0.0000001s", "UPPER", "a" * 300, "has space", "http://", "ftp://x", "\u00e9", "a-", "-a", "é"]
)  # fmt: skip
RULE_MUTATIONS = (
    "duplicate class name", "defaultClass not a class", "preferred also a fallback", "watermarks inverted",
    "staleAfter not above interval", "complexity min above max", "no backends selection", "two endpoint kinds",
    "no endpoint kind", "zero duration",
)  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _mutate_generic(draw: st.DrawFn, doc: dict[str, Any]) -> str:
    path = draw(st.sampled_from(_paths(doc)[1:] or [()]))
    if not path:
        doc["unknownField"] = 1
        return "unknown field at the top"
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    kind = draw(st.sampled_from(["delete", "other type", "edge value", "unknown sibling"]))
    where = ".".join(map(str, path))
    if kind == "delete":
        del parent[last]
    elif kind == "other type":
        parent[last] = draw(_OTHER_TYPE)
    elif kind == "edge value":
        parent[last] = draw(_EDGY)
    elif isinstance(parent, dict):
        parent["zzUnknown"] = "x"
        return f"unknown field next to {where}"
    else:
        parent.append(draw(_OTHER_TYPE))
        return f"extra item in {'.'.join(map(str, path[:-1]))}"
    return f"{kind} at {where}"


def _mutate_rule(draw: st.DrawFn, case: Case) -> str:
    rule = draw(st.sampled_from(RULE_MUTATIONS))
    p, classes = case.policy, case.policy["classes"]
    backend = case.backends[draw(st.sampled_from(sorted(case.backends)))]
    if rule == "duplicate class name":
        classes.append(copy.deepcopy(classes[0]))
    elif rule == "defaultClass not a class":
        p["defaultClass"] = "no-such-class"
    elif rule == "preferred also a fallback":
        classes[0]["fallbacks"] = list(classes[0]["preferred"][:1])
    elif rule == "watermarks inverted":
        p["offload"] = {**p.get("offload", {}), "lowWatermark": 0.9, "highWatermark": 0.5}
    elif rule == "staleAfter not above interval":
        p["adaptation"] = {**p.get("adaptation", {}), "interval": "30s", "staleAfter": "30s"}
    elif rule == "complexity min above max":
        classes[0]["complexity"] = {"min": 4, "max": 2}
    elif rule == "no backends selection":
        p["backends"] = {}
    elif rule == "two endpoint kinds":
        backend["endpoints"] = {"service": {"name": "svc", "port": 8000}, "static": ["http://127.0.0.1:8000"]}
    elif rule == "no endpoint kind":
        backend["endpoints"] = {"scheme": "http"}
    else:
        p.setdefault("queue", {})["maxWait"] = "0s"
    return rule


@st.composite
def cases(draw: st.DrawFn) -> Case:
    backends, labels, policy = draw(_drawn())
    # hypothesis favours the first choices: coherent and mutated cases are the ones that reach a table
    mode = draw(st.sampled_from(["coherent", "mutated", "schema"]))
    case = Case(mode, backends, labels, policy)
    if mode != "schema":
        case.policy = _cohere(draw, backends, policy)
    if mode == "mutated":
        if draw(st.booleans()):
            case.mutation = _mutate_rule(draw, case)
        else:
            target = draw(st.sampled_from(["policy", *sorted(backends)]))
            doc = case.policy if target == "policy" else backends[target]
            case.mutation = f"{target}: {_mutate_generic(draw, doc)}"
    case.readings = [draw(_readings(sorted(backends))) for _ in range(draw(st.integers(0, 3)))]
    return case


# ---------------------------------------------------------------------------------------------- judging


@dataclass
class Verdict:
    outcome: str
    """rejected (at apply time), invalid (the operator's InvalidSpec), or table."""
    detail: str
    findings: list[str] = field(default_factory=list)
    table: RoutingTable | None = None


def apply_dry_run(api: kubernetes.client.ApiClient, namespace: str, case: Case) -> tuple[
    list[dict[str, Any]], dict[str, Any] | None, dict[str, str]
]:  # fmt: skip
    """Server-side dry-run create of each object: the stored bodies of those accepted, and the rejections."""
    custom = kubernetes.client.CustomObjectsApi(api)
    accepted: list[dict[str, Any]] = []
    rejections: dict[str, str] = {}
    policy_body = None
    for doc in case.documents():
        plural = "modelbackends" if doc["kind"] == "ModelBackend" else "routingpolicies"
        try:
            stored = custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, plural, doc, dry_run="All", field_validation="Strict"
            )  # as kubectl apply: unknown fields are an error, not silently pruned
        except ApiException as e:
            if e.status not in (400, 422):
                raise
            rejections[doc["metadata"]["name"]] = _api_message(e)
            continue
        if doc["kind"] == "ModelBackend":
            accepted.append(stored)
        else:
            policy_body = stored
    return accepted, policy_body, rejections


def _api_message(e: ApiException) -> str:
    try:
        return str(json.loads(e.body)["message"])
    except (ValueError, KeyError, TypeError):
        return str(e.reason)


def judge(
    case: Case,
    policy_body: dict[str, Any] | None,
    backend_bodies: list[dict[str, Any]],
    rejections: dict[str, str] | None = None,
) -> Verdict:
    """The operator's view of what the apiserver stored (``policy_body`` None: the policy was rejected;
    ``rejections``: object name -> the apiserver's message)."""
    findings = _drift(case, policy_body, backend_bodies, rejections or {})
    if policy_body is None:
        return Verdict("rejected", "", findings)
    try:
        policy = RoutingPolicySpec.model_validate(policy_body["spec"])
    except pydantic.ValidationError as e:
        return Verdict("invalid", f"spec: {_short(e)}", findings)
    selected, problems = [], []
    for body in select_backends(policy, backend_bodies):
        name = str(body["metadata"]["name"])
        try:
            selected.append(SelectedBackend(name, body, ModelBackendSpec.model_validate(body["spec"])))
        except pydantic.ValidationError as e:
            problems.append(f"ModelBackend {name}: {_short(e)}")
    problems += validate(policy, {b.name: b.spec for b in selected})
    if problems:
        return Verdict("invalid", "; ".join(problems), findings)
    table, table_findings = _tables(case, policy, selected)
    return Verdict("table", "", findings + table_findings, table)


def _drift(
    case: Case,
    policy_body: dict[str, Any] | None,
    backend_bodies: list[dict[str, Any]],
    rejections: dict[str, str],
) -> list[str]:
    """Where the CRD schema and the models disagree: the stored object (what the operator reads, unknown fields
    pruned, defaults filled) rejected by the models, or a drawn object the models take rejected at apply."""
    out = []
    stored = {str(b["metadata"]["name"]): b["spec"] for b in backend_bodies}
    for name, spec in case.backends.items():
        out += _disagreement(f"ModelBackend {name}", ModelBackendSpec, stored.get(name, spec), name in stored,
                             rejections.get(name, ""))  # fmt: skip
    policy = policy_body["spec"] if policy_body is not None else case.policy
    out += _disagreement("RoutingPolicy", RoutingPolicySpec, policy, policy_body is not None,
                         rejections.get("fuzz", ""))  # fmt: skip
    return out


def _disagreement(
    what: str, model: type[pydantic.BaseModel], spec: Any, accepted: bool, why_rejected: str
) -> list[str]:
    try:
        model.model_validate(spec)
        valid, why = True, ""
    except pydantic.ValidationError as e:
        valid, why = False, _short(e)
    if accepted and not valid:
        return [f"drift: the apiserver accepts, the models reject ({what.split()[0]}: {_normalise(why)})"]
    if valid and not accepted:
        return [
            f"drift: the models accept, the apiserver rejects ({what.split()[0]}: {_normalise(why_rejected)})"
        ]
    return []


def _normalise(text: str) -> str:
    """A problem's kind without the drawn values, so that one kind is one finding."""
    text = re.sub(r"\[\d+\]|\.\d+\.", ".N.", text)
    return re.sub(r"'[^']*'|\"[^\"]*\"|-?\d+(\.\d+)?(e[-+]?\d+)?", "_", text)[:160]


def _short(e: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()[:3])


def _endpoints(spec: ModelBackendSpec) -> list[Endpoint]:
    """What discovery would find: the static URLs, or one ready pod for a Service or a selector."""
    e = spec.endpoints
    if e.static is not None:
        return sorted(Endpoint(url.rstrip("/")) for url in e.static)
    port = e.service.port if e.service is not None else e.selector.port  # type: ignore[union-attr]
    return [Endpoint(f"{e.scheme}://127.0.0.1:{port}", "pod-0")]


def _tables(
    case: Case, policy: RoutingPolicySpec, selected: list[SelectedBackend]
) -> tuple[RoutingTable, list[str]]:
    """The operator's tables for this policy over a first cycle and the drawn extra cycles."""
    loop = PolicyLoop.__new__(PolicyLoop)  # only the fields the table builder reads; no API, no Prometheus
    loop.namespace, loop.name, loop.ready_since = "fuzz", "fuzz", {}
    for b in selected:
        b.endpoints = _endpoints(b.spec)
        for endpoint in b.endpoints:
            loop.ready_since.setdefault(endpoint.url, NOW - 3600)
    body = {"spec": {"routingTable": {"configMapName": policy.routing_table.config_map_name}}}
    findings: list[str] = []
    previous, table = None, None
    for cycle, readings in enumerate([{}, *case.readings]):
        inputs = [_input(b, readings.get(b.name, {}), NOW - 3600) for b in selected]
        try:
            decision = decide(policy=policy, backends=inputs, previous=previous, now=NOW + 5 * cycle)
            table = loop._table(policy, selected, decision, body)
        except Exception as e:  # the operator's cycle would fail: a finding
            findings.append(f"cycle {cycle}: {type(e).__name__}: {_normalise(str(e))}")
            break
        previous = decision.state
        findings += [f"cycle {cycle}: {p}" for p in table_problems(table)]
    assert table is not None or findings
    return table, findings  # type: ignore[return-value]


def _input(b: SelectedBackend, signals: dict[str, Reading], since: float) -> BackendInput:
    return BackendInput(
        name=b.name,
        tasks=frozenset(b.spec.capabilities.tasks),
        max_complexity=b.spec.capabilities.max_complexity,
        size_billions=b.spec.size_billions,
        max_concurrency=b.spec.capacity.max_concurrency,
        ready_endpoints=len(b.endpoints),
        newest_ready_since=since,
        signals=signals,  # type: ignore[arg-type]
        latency={},
    )


def table_problems(table: RoutingTable) -> list[str]:
    """Why this table must not be written: invalid, empty, or not loadable by the router."""
    problems = []
    if not all(c.weights for c in table.classes):
        empty = [c.name for c in table.classes if not c.weights]
        problems.append(f"classes with no weights although every named backend has endpoints: {len(empty)}")
    try:
        sealed = table.sealed(version=1, generated_at="2026-01-01T00:00:00Z")
        loaded = RoutingTable.from_json(sealed.to_json())
        TableSnapshot.build(loaded, model=shipped())  # as the router loads it, learned classifier included
    except (ValueError, TypeError, KeyError) as e:
        problems.append(f"the table does not load: {type(e).__name__}: {_normalise(str(e))}")
    for c in table.classes:
        if any(not math.isfinite(w) or w < 0 for w in c.weights.values()):
            problems.append("a weight that is not a finite share")
    return problems


# ---------------------------------------------------------------------------------------------- tally


@dataclass
class Tally:
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(mode, outcome) -> cases."""
    findings: dict[str, tuple[int, Case]] = field(default_factory=dict)
    backends_rejected: int = 0
    backends_accepted: int = 0

    def record(self, case: Case, verdict: Verdict, backends_accepted: int) -> None:
        self.outcomes[(case.mode, verdict.outcome)] += 1
        self.backends_accepted += backends_accepted
        self.backends_rejected += len(case.backends) - backends_accepted
        for f in verdict.findings:
            count, first = self.findings.get(f, (0, case))
            self.findings[f] = (count + 1, first)

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


# ---------------------------------------------------------------------------------------------- the real operator


def for_the_operator(case: Case, index: int) -> Case:
    """The case as the real operator gets it: Prometheus on a loopback port where nothing listens (a drawn
    address may be anywhere; the operator only learns it cannot measure), a table name of its own, a Service or
    selector turned into the static URL discovery would have found, and a control interval of one second (a
    policy created together with its backends may be judged before the operator has seen them)."""
    out = copy.deepcopy(case)
    for spec in out.backends.values():  # what discovery would find, without pods and Services to make
        endpoints = spec.get("endpoints")
        if isinstance(endpoints, dict) and "static" not in endpoints:
            kind = endpoints.get("service") or endpoints.get("selector")
            if isinstance(kind, dict) and isinstance(kind.get("port"), int):
                scheme = endpoints.get("scheme", "http")
                endpoints.pop("service", None)
                endpoints.pop("selector", None)
                endpoints["static"] = [f"{scheme}://127.0.0.1:{kind['port']}"]
    adaptation = out.policy.setdefault("adaptation", {})
    if isinstance(adaptation, dict):  # cycles every second: see docs/fuzzing.md, finding 3
        adaptation.update(interval="1s", staleAfter="60s")
    prometheus = out.policy.setdefault("prometheus", {})
    if isinstance(prometheus, dict):
        prometheus.update(address="http://127.0.0.1:9", timeout="1s")
    table = out.policy.get("routingTable")
    if isinstance(table, dict):
        table["configMapName"] = f"fuzz-table-{index}"
    return out


def operator_outcome(status: Mapping[str, Any]) -> str | None:
    """invalid, table or None (not decided yet) from a RoutingPolicy's status conditions."""
    conditions = {c["type"]: c for c in status.get("conditions", [])}
    if conditions.get("InvalidSpec", {}).get("status") == "True":
        return "invalid"
    if conditions.get("Ready", {}).get("status") == "True" and status.get("table"):
        return "table"
    return None

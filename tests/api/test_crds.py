"""The CRDs on a real kube-apiserver: they install, the samples apply, bad documents are rejected at apply
time with the offending field named, and status round-trips with nothing pruned.

Every invalid document is also fed to the pydantic models: the schema and the models must agree.
"""

from __future__ import annotations

import copy
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import pydantic
import pytest
import yaml

from zeta_dev.localcluster.cluster import Cluster
from zeta_operator.api import crdgen
from zeta_operator.api.backend import ModelBackendSpec, ModelBackendStatus
from zeta_operator.api.common import GROUP, VERSION
from zeta_operator.api.policy import RoutingPolicySpec, RoutingPolicyStatus

SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"
Doc = dict[str, Any]


def sample(name: str) -> Doc:
    doc: Doc = yaml.safe_load((SAMPLES / f"{name}.yaml").read_text())
    return doc


def test_crds_are_generated_from_the_models() -> None:
    assert crdgen.main(["--check"]) == 0, "crds/ is out of date: run python -m zeta_operator.api.crdgen"


def test_crds_install_and_become_established(crds: Cluster) -> None:
    ext = kubernetes.client.ApiextensionsV1Api(crds.api_client())
    for plural in ("modelbackends", "routingpolicies"):
        crd = ext.read_custom_resource_definition(f"{plural}.{GROUP}")
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions.get("Established") == "True"
        assert conditions.get("NamesAccepted") == "True"


def test_samples_apply_and_show_in_kubectl_get(crds: Cluster, namespace: str) -> None:
    crds.kubectl("apply", "-n", namespace, "-k", str(SAMPLES))
    out = crds.kubectl("get", "-n", namespace, "mb,rp").stdout
    for name in ("general-4b", "coder-7b", "large-14b", "routingpolicy.zeta.dev/demo"):
        assert name in out
    # The API server filled in every default, and the result is still a valid spec for the models.
    policy = crds.kubectl("get", "-n", namespace, "rp", "demo", "-o", "yaml").stdout
    spec = RoutingPolicySpec.model_validate(yaml.safe_load(policy)["spec"])
    assert spec.adaptation.weight_floor == 0.02
    assert spec.queue.max_wait == "10s"


def test_prometheus_tls_and_credentials_apply_and_stay_as_written(crds: Cluster, namespace: str) -> None:
    doc = sample("routingpolicy")
    doc["spec"]["prometheus"] = {
        "address": "https://prometheus.monitoring.svc:9090",
        "tls": {"ca": {"secret": {"name": "prometheus-ca", "key": "ca.crt"}}},
        "basicAuth": {"username": {"name": "prom-auth", "key": "username"},
                      "password": {"name": "prom-auth", "key": "password"}},
    }  # fmt: skip
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    got = yaml.safe_load(crds.kubectl("get", "-n", namespace, "rp", "demo", "-o", "yaml").stdout)["spec"]
    spec = RoutingPolicySpec.model_validate(got).prometheus
    assert got["prometheus"]["tls"] == {**doc["spec"]["prometheus"]["tls"], "insecureSkipVerify": False}
    assert spec.basic_auth is not None and spec.basic_auth.password.key == "password"
    assert spec.bearer_token is None
    # Left out, the TLS settings default to verifying against the system's CAs; no CA is invented.
    defaults = RoutingPolicySpec.model_validate(sample("routingpolicy")["spec"]).prometheus.tls
    assert defaults.ca is None and defaults.insecure_skip_verify is False


def test_models_accept_every_sample() -> None:
    for path in sorted(SAMPLES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        model = {"ModelBackend": ModelBackendSpec, "RoutingPolicy": RoutingPolicySpec}.get(doc["kind"])
        if model:
            model.model_validate(doc["spec"])


def _edit(base: str, change: Callable[[Doc], None]) -> Doc:
    doc = copy.deepcopy(sample(base))
    change(doc)
    return doc


def _set(path: str, value: Any) -> Callable[[Doc], None]:
    """A change that sets a dotted path (list indices as numbers); value None deletes it."""

    def change(doc: Doc) -> None:
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
        node: Any = doc
        for key in keys[:-1]:
            node = node[key]
        if value is None:
            del node[keys[-1]]
        else:
            node[keys[-1]] = value

    return change


def _chain(*changes: Callable[[Doc], None]) -> Callable[[Doc], None]:
    def change(doc: Doc) -> None:
        for c in changes:
            c(doc)

    return change


# (id, base sample, change, text the apiserver's error must contain: the field and/or the rule's message)
INVALID: list[tuple[str, str, Callable[[Doc], None], list[str]]] = [
    ("mb-no-model", "coder-7b", _set("spec.model", None), ["spec.model", "Required"]),
    ("mb-no-endpoints-kind", "coder-7b", _set("spec.endpoints", {"scheme": "http"}),
     ["spec.endpoints", "set exactly one of service, selector or static"]),
    ("mb-two-endpoint-kinds", "coder-7b", _set("spec.endpoints.static", ["http://10.0.0.7:8000"]),
     ["spec.endpoints", "set exactly one of service, selector or static"]),
    ("mb-static-url-scheme", "coder-7b",
     _chain(_set("spec.endpoints.service", None), _set("spec.endpoints.static", ["ftp://10.0.0.7"])),
     ["spec.endpoints.static[0]"]),
    ("mb-port-range", "coder-7b", _set("spec.endpoints.service.port", 70000), ["spec.endpoints.service.port"]),
    ("mb-complexity-ceiling", "coder-7b", _set("spec.capabilities.maxComplexity", 6),
     ["spec.capabilities.maxComplexity", "less than or equal to 5"]),
    ("mb-no-tasks", "coder-7b", _set("spec.capabilities.tasks", []), ["spec.capabilities.tasks"]),
    ("mb-task-name", "coder-7b", _set("spec.capabilities.tasks", ["Code!"]), ["spec.capabilities.tasks[0]"]),
    ("mb-zero-concurrency", "coder-7b", _set("spec.capacity.maxConcurrency", 0),
     ["spec.capacity.maxConcurrency"]),
    ("mb-negative-cost", "coder-7b", _set("spec.cost", -1), ["spec.cost"]),
    ("mb-unknown-engine", "coder-7b", _set("spec.metrics", {"engine": "triton"}),
     ["spec.metrics.engine", "Unsupported value"]),
    ("mb-unknown-field", "coder-7b", _set("spec.replicas", 3), ['unknown field "spec.replicas"']),
    ("mb-unknown-signal", "coder-7b", _set("spec.metrics", {"queries": {"gpu": "up"}}),
     ['unknown field "spec.metrics.queries.gpu"']),
    ("rp-no-classes", "routingpolicy", _set("spec.classes", []), ["spec.classes"]),
    ("rp-duplicate-class", "routingpolicy",
     lambda d: d["spec"]["classes"].append(copy.deepcopy(d["spec"]["classes"][0])),
     ["task class names must be unique"]),
    ("rp-complexity-order", "routingpolicy", _set("spec.classes.0.complexity", {"min": 4, "max": 2}),
     ["spec.classes[0].complexity", "complexity min must not exceed max"]),
    ("rp-duration-format", "routingpolicy", _set("spec.classes.0.latencyObjective", "5 seconds"),
     ["spec.classes[0].latencyObjective"]),
    ("rp-duration-zero", "routingpolicy", _set("spec.classes.0.latencyObjective", "0s"),
     ["spec.classes[0].latencyObjective", "must be a duration above zero"]),
    # found by bench.fuzz_crds: the models took durations beyond Go's int64 nanoseconds, which CEL cannot hold
    ("rp-duration-overflow", "routingpolicy", _set("spec.classes.0.latencyObjective", "2600000h"),
     ["spec.classes[0].latencyObjective"]),
    ("rp-stale-before-interval", "routingpolicy", _set("spec.adaptation", {"interval": "30s", "staleAfter": "10s"}),
     ["staleAfter must be longer than adaptation.interval"]),
    ("rp-watermarks", "routingpolicy", _set("spec.offload", {"highWatermark": 0.5, "lowWatermark": 0.7}),
     ["spec.offload", "lowWatermark must be below highWatermark"]),
    ("rp-default-class", "routingpolicy", _set("spec.defaultClass", "nope"),
     ["defaultClass must name one of the classes"]),
    ("rp-backends-empty", "routingpolicy", _set("spec.backends", {}),
     ["spec.backends", "set names or selector (or both)"]),
    ("rp-floor-range", "routingpolicy", _set("spec.adaptation", {"weightFloor": 1.5}),
     ["spec.adaptation.weightFloor", "less than or equal to 1"]),
    ("rp-preferred-and-fallback", "routingpolicy", _set("spec.classes.0.fallbacks", ["general-4b"]),
     ["spec.classes[0]", "a backend cannot be both preferred and a fallback"]),
    ("rp-priority-range", "routingpolicy", _set("spec.classes.0.priority", 10), ["spec.classes[0].priority"]),
    ("rp-prometheus-address", "routingpolicy", _set("spec.prometheus", {"address": "prometheus:9090"}),
     ["spec.prometheus.address"]),
    ("rp-prometheus-userinfo", "routingpolicy", _set("spec.prometheus.address", "https://u:pw@prometheus:9090"),
     ["spec.prometheus.address"]),
    ("rp-prometheus-ca-and-insecure", "routingpolicy",
     _set("spec.prometheus.tls", {"ca": {"configMap": {"name": "ca", "key": "ca.crt"}}, "insecureSkipVerify": True}),
     ["spec.prometheus.tls", "set ca or insecureSkipVerify, not both"]),
    ("rp-prometheus-ca-two-sources", "routingpolicy",
     _set("spec.prometheus.tls", {"ca": {"configMap": {"name": "ca", "key": "k"}, "secret": {"name": "ca", "key": "k"}}}),
     ["spec.prometheus.tls.ca", "set exactly one of configMap or secret"]),
    ("rp-prometheus-ca-no-source", "routingpolicy", _set("spec.prometheus.tls", {"ca": {}}),
     ["spec.prometheus.tls.ca", "set exactly one of configMap or secret"]),
    ("rp-prometheus-two-auths", "routingpolicy",
     _set("spec.prometheus", {"bearerToken": {"name": "t", "key": "token"},
                              "basicAuth": {"username": {"name": "a", "key": "u"}, "password": {"name": "a", "key": "p"}}}),
     ["spec.prometheus", "set basicAuth or bearerToken, not both"]),
    ("rp-prometheus-secret-key", "routingpolicy", _set("spec.prometheus.bearerToken", {"name": "t", "key": "a/b"}),
     ["spec.prometheus.bearerToken.key"]),
    ("rp-no-routing-table", "routingpolicy", _set("spec.routingTable", None), ["spec.routingTable", "Required"]),
    ("rp-too-many-classes", "routingpolicy",
     lambda d: d["spec"].update(classes=[{**d["spec"]["classes"][0], "name": f"c{i}"} for i in range(33)]),
     ["spec.classes", "must have at most 32 items"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("base", "change", "expected"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_document_is_rejected_at_apply_time(
    crds: Cluster, namespace: str, base: str, change: Callable[[Doc], None], expected: list[str]
) -> None:
    doc = _edit(base, change)
    result = crds.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc), check=False)
    assert result.returncode != 0, f"accepted: {yaml.safe_dump(doc['spec'])}"
    for text in expected:
        assert text in result.stderr, result.stderr
    # Nothing was created.
    got = crds.kubectl("get", "-n", namespace, doc["kind"].lower(), doc["metadata"]["name"], check=False)
    assert got.returncode != 0 and "NotFound" in got.stderr


@pytest.mark.parametrize(("base", "change"), [c[1:3] for c in INVALID], ids=[c[0] for c in INVALID])
def test_models_reject_what_the_schema_rejects(base: str, change: Callable[[Doc], None]) -> None:
    doc = _edit(base, change)
    model = ModelBackendSpec if doc["kind"] == "ModelBackend" else RoutingPolicySpec
    with pytest.raises(pydantic.ValidationError):
        model.model_validate(doc["spec"])


def test_at_least_fifteen_distinct_invalid_documents() -> None:
    assert len({c[0] for c in INVALID}) >= 15


FULL_BACKEND_STATUS = ModelBackendStatus.model_validate(
    {
        "state": "Overloaded",
        "load": 1.25,
        "readyEndpoints": ["http://10.0.0.7:8000", "http://10.0.0.8:8000"],
        "endpointCount": 2,
        "signals": {
            "cpu": {"value": 0.93, "state": "ok", "observedAt": "2026-11-26T10:00:00Z"},
            "queueDepth": {"state": "no-data", "observedAt": "2026-11-26T10:00:00Z", "message": "empty result"},
        },
        "observedGeneration": 1,
        "lastUpdated": "2026-11-26T10:00:00Z",
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "Measured", "message": "ok",
             "lastTransitionTime": "2026-11-26T10:00:00Z", "observedGeneration": 1}
        ],
    }
)  # fmt: skip

FULL_POLICY_STATUS = RoutingPolicyStatus.model_validate(
    {
        "classes": [
            {"name": "code-simple", "weights": {"coder-7b": 0.7, "general-4b": 0.3},
             "reasons": {"general-4b": "offload: coder-7b load 1.12 > 0.85"}, "offloading": True}
        ],
        "weightsSummary": "code-simple: coder-7b=0.70 general-4b=0.30",
        "backendCount": 3,
        "table": {"configMap": "zeta-routes-demo", "version": 7, "hash": "sha256:abc"},
        "observedGeneration": 1,
        "lastUpdated": "2026-11-26T10:00:00Z",
        "conditions": [
            {"type": "MetricsAvailable", "status": "False", "reason": "PrometheusUnreachable",
             "message": "connection refused", "lastTransitionTime": "2026-11-26T10:00:00Z"}
        ],
        "prometheus": {"tls": "Verified", "auth": "BasicAuth"},
    }
)  # fmt: skip


@pytest.mark.parametrize(
    ("sample_name", "plural", "status"),
    [
        ("coder-7b", "modelbackends", FULL_BACKEND_STATUS),
        ("routingpolicy", "routingpolicies", FULL_POLICY_STATUS),
    ],
)
def test_status_patch_round_trips_with_nothing_pruned(
    crds: Cluster, namespace: str, sample_name: str, plural: str, status: pydantic.BaseModel
) -> None:
    doc = sample(sample_name)
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    api = kubernetes.client.CustomObjectsApi(crds.api_client())
    wire = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    name = doc["metadata"]["name"]
    api.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, {"status": wire})
    back = api.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)["status"]
    assert back == wire
    assert type(status).model_validate(back) == status


def test_kubectl_printer_columns_show_status(crds: Cluster, namespace: str) -> None:
    doc = sample("coder-7b")
    crds.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))
    api = kubernetes.client.CustomObjectsApi(crds.api_client())
    api.patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "modelbackends", "coder-7b", {"status": FULL_BACKEND_STATUS.to_wire()}
    )
    out = crds.kubectl("get", "-n", namespace, "mb", "coder-7b").stdout.split()
    assert "Overloaded" in out and "1.25" in out and "2" in out


def test_kubectl_explain_has_field_docs(crds: Cluster) -> None:
    try:
        out = crds.kubectl("explain", "routingpolicy.spec.adaptation.weightFloor").stdout
    except subprocess.CalledProcessError as e:  # pragma: no cover - shows the apiserver's answer
        raise AssertionError(e.stderr) from e
    assert "Share every capable backend keeps" in out

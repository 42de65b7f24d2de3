"""Generates the CRDs in `crds/` (and the same files in the Helm chart's `charts/zeta/crds/`) from the pydantic
models, so the three cannot drift.

pydantic's JSON schema becomes a Kubernetes structural schema: references inlined, ``Optional[X]`` as plain X,
``null`` defaults dropped, object fields whose model has defaults of its own defaulted to ``{}`` (so the
API server fills in and shows every effective setting), durations checked by CEL to be above zero.

    python -m zeta_operator.api.crdgen            # rewrite crds/*.yaml and charts/zeta/crds/*.yaml
    python -m zeta_operator.api.crdgen --check    # exit 1 if either is out of date
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .backend import ModelBackendSpec, ModelBackendStatus
from .common import GROUP, VERSION
from .policy import RoutingPolicySpec, RoutingPolicyStatus

REPO = Path(__file__).resolve().parents[2]
CRD_DIR = REPO / "crds"
CHART_CRD_DIR = REPO / "charts" / "zeta" / "crds"  # helm installs crds/ before the templates
KUSTOMIZE_CRD_DIR = REPO / "manifests" / "crds"  # kustomize loads nothing from outside manifests/

_KEEP = {
    "type", "properties", "required", "items", "additionalProperties", "enum", "default", "description",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "pattern",
    "minItems", "maxItems", "minProperties", "maxProperties", "x-kubernetes-validations", "format",
}  # fmt: skip


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model, as a CRD wants it."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _convert(raw, raw.get("$defs", {}))


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    duration = node.get("x-zeta-duration", False)
    for key, value in node.items():
        if key not in _KEEP:
            continue
        if key == "properties":
            required = set(node.get("required", []))
            out[key] = {name: _property(sub, defs, required=name in required) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _convert(value, defs)
        elif key == "exclusiveMinimum":
            # OpenAPI v3.0 (what CRDs speak) wants a boolean beside minimum, not JSON Schema's number.
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum":
            out["maximum"], out["exclusiveMaximum"] = value, True
        else:
            out[key] = copy.deepcopy(value)  # shared lists would be written as YAML anchors and aliases
    if out.get("type") == "integer" and "format" not in out:
        out["format"] = "int64"
    if duration:
        rules = out.setdefault("x-kubernetes-validations", [])
        rules.append({"rule": "duration(self) > duration('0s')", "message": "must be a duration above zero"})
    if out.get("default", "") is None:
        del out["default"]
    if out.get("additionalProperties") is False:
        del out["additionalProperties"]  # structural schemas forbid it; unknown fields are pruned or rejected
    return _ordered(out)


_ORDER = [
    "description",
    "type",
    "format",
    "required",
    "properties",
    "items",
    "additionalProperties",
    "default",
]


def _ordered(schema: dict[str, Any]) -> dict[str, Any]:
    """Stable, readable key order: what it is first, then its parts, then its limits."""
    rank = {k: i for i, k in enumerate(_ORDER)}
    return dict(sorted(schema.items(), key=lambda kv: (rank.get(kv[0], len(_ORDER)), kv[0])))


def _property(sub: dict[str, Any], defs: dict[str, Any], *, required: bool) -> dict[str, Any]:
    description = sub.get("description")
    default = sub.get("default")
    resolved = _resolve(sub, defs)
    schema = _convert(resolved, defs)
    if description and "description" not in schema:
        schema["description"] = description
    if default is not None:
        schema["default"] = default
    elif "default" not in sub and not required and schema.get("type") == "object" and _all_optional(schema):
        # An object whose every field is optional defaults to its fields' defaults, so the API server fills
        # in (and shows) every effective setting, and CEL rules on it always see both sides. An object that
        # is optional itself (``X | None = None``) stays absent until set.
        schema["default"] = _defaults_of(schema)
    return _ordered(schema)


def _defaults_of(schema: dict[str, Any]) -> dict[str, Any]:
    return {
        name: copy.deepcopy(prop["default"])
        for name, prop in schema.get("properties", {}).items()
        if "default" in prop
    }


def _all_optional(schema: dict[str, Any]) -> bool:
    return bool(schema.get("properties")) and not schema.get("required") and schema.get("type") == "object"


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Inline $ref and unwrap Optional (anyOf [X, null]), keeping the outer description and default."""
    extra = {k: v for k, v in node.items() if k not in ("$ref", "anyOf", "allOf")}
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        return {**_resolve(target, defs), **{k: v for k, v in extra.items() if k != "title"}}
    variants = node.get("anyOf") or node.get("allOf")
    if variants:
        concrete = [v for v in variants if v.get("type") != "null"]
        if len(concrete) != 1:
            raise ValueError(
                f"cannot express union {variants} structurally; use one model with optional fields"
            )
        return {**_resolve(concrete[0], defs), **extra}
    return node


def _crd(
    *, kind: str, plural: str, short: str, spec: type[BaseModel], status: type[BaseModel],
    columns: list[dict[str, Any]], description: str,
) -> dict[str, Any]:  # fmt: skip
    spec_schema = structural_schema(spec)
    spec_schema["description"] = description
    status_schema = structural_schema(status)
    status_schema["description"] = f"Observed state of the {kind}, written by the Zeta operator."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "zeta"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["zeta", "all-zeta"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }


def _column(name: str, path: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "jsonPath": path, **extra}


def crds() -> dict[str, dict[str, Any]]:
    """File name to CRD document."""
    age = _column("Age", ".metadata.creationTimestamp", "date")
    return {
        "zeta.dev_modelbackends.yaml": _crd(
            kind="ModelBackend",
            plural="modelbackends",
            short="mb",
            spec=ModelBackendSpec,
            status=ModelBackendStatus,
            description="One deployed model server and what it can do.",
            columns=[
                _column("Model", ".spec.model"),
                _column("State", ".status.state"),
                _column("Load", ".status.load", "number", format="float"),
                _column("Endpoints", ".status.endpointCount", "integer"),
                _column("Max-Complexity", ".spec.capabilities.maxComplexity", "integer", priority=1),
                age,
            ],
        ),
        "zeta.dev_routingpolicies.yaml": _crd(
            kind="RoutingPolicy",
            plural="routingpolicies",
            short="rp",
            spec=RoutingPolicySpec,
            status=RoutingPolicyStatus,
            description="How traffic of a set of task classes is shared across a set of ModelBackends.",
            columns=[
                _column("Ready", ".status.conditions[?(@.type=='Ready')].status"),
                _column("Backends", ".status.backendCount", "integer"),
                _column("Table-Version", ".status.table.version", "integer"),
                _column("Weights", ".status.weightsSummary"),
                age,
            ],
        ),
    }


def render(doc: dict[str, Any]) -> str:
    header = "# Generated by `python -m zeta_operator.api.crdgen` from zeta_operator/api; do not edit.\n"
    return header + yaml.safe_dump(doc, sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="fail if crds/ or charts/zeta/crds/ differs from the models"
    )
    parser.add_argument(
        "--out",
        type=Path,
        action="append",
        help="write here instead (repeatable; default: both CRD directories)",
    )
    args = parser.parse_args(argv)
    stale = []
    outs = args.out or [CRD_DIR, CHART_CRD_DIR, KUSTOMIZE_CRD_DIR]
    for (name, doc), out in ((item, out) for item in crds().items() for out in outs):
        path = out / name
        text = render(doc)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("out of date (run python -m zeta_operator.api.crdgen): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

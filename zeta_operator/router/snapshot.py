"""A validated routing table with everything the hot path needs precomputed, built once per reload.

Handlers read the current snapshot once at the start of a request and keep it: a reload swaps the store's
reference and never mutates a snapshot, so a request in flight finishes with the table it started with.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..api.table import RoutingTable, TableBackend
from .balancer import ClassRoute
from .classify import Classifier
from .model import LearnedModel


@dataclass(frozen=True)
class TableSnapshot:
    table: RoutingTable
    classifier: Classifier
    routes: dict[str, ClassRoute]
    models_body: bytes
    """The /v1/models answer: served model names and aliases."""
    endpoint_owner: dict[str, str]
    """Endpoint URL -> backend name."""

    @classmethod
    def build(cls, table: RoutingTable, *, model: LearnedModel | None, replicas: int = 1) -> TableSnapshot:
        """``model``: the learned classifier, None for the rule classifier; ``replicas``: router replicas
        sharing the endpoints (`replica_share`)."""
        classifier = Classifier(
            table.classifier, table.classes, default_class=table.default_class, model=model
        )
        backends = replica_share(table.backends, replicas)
        routes = {c.name: ClassRoute.build(c, backends) for c in table.classes}
        return cls(
            table=table,
            classifier=classifier,
            routes=routes,
            models_body=_models_body(table, classifier.aliases),
            endpoint_owner={e.url: b.name for b in table.backends for e in b.endpoints},
        )

    @property
    def version(self) -> int:
        return self.table.version


def replica_share(backends: list[TableBackend], replicas: int) -> list[TableBackend]:
    """The backends with each endpoint's cap divided among ``replicas`` routers (rounded up, at least 1):
    a router counts only its own requests in flight, so N replicas each admitting the whole cap would let an
    engine hold N times it."""
    if replicas <= 1:
        return backends
    return [
        b.model_copy(
            update={
                "endpoints": [
                    e.model_copy(update={"max_concurrency": max(1, math.ceil(e.max_concurrency / replicas))})
                    for e in b.endpoints
                ]
            }
        )
        for b in backends
    ]


def _models_body(table: RoutingTable, aliases: list[str]) -> bytes:
    names = {b.model: b.name for b in table.backends}
    data = [
        {"id": m, "object": "model", "created": 0, "owned_by": f"zeta/{b}"} for m, b in sorted(names.items())
    ]
    data += [
        {"id": a, "object": "model", "created": 0, "owned_by": "zeta/alias"}
        for a in aliases
        if a not in names
    ]
    return json.dumps({"object": "list", "data": data}).encode()

"""A real watch on the routing-table ConfigMap that checks every version the router could load.

It lists, then watches from the list's resourceVersion, and after any error (the apiserver going away
included) lists again: so it sees every write the router's own watch can see, and checks each one the way
the router loads it (the table model, the router's snapshot with the shipped classifier) plus what the router
needs to serve: classes, each with a weighted backend that is capable and has endpoints.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import kubernetes

from zeta_operator.api.table import CONFIGMAP_KEY, RoutingTable
from zeta_operator.router.model import shipped
from zeta_operator.router.snapshot import TableSnapshot

from ..localcluster.cluster import Cluster


def table_problems(text: str | None) -> tuple[RoutingTable | None, list[str]]:
    """The table in ``text`` and why the router could not serve every class from it (empty: it can)."""
    if not text:
        return None, ["no table in the ConfigMap"]
    try:
        table = RoutingTable.from_json(text)
        TableSnapshot.build(table, model=shipped())
    except ValueError as e:
        return None, [f"does not load: {type(e).__name__}: {str(e)[:300]}"]
    problems = [] if table.classes else ["no classes"]
    backends = {b.name: b for b in table.backends}
    for c in table.classes:
        if not c.weights or not math.isclose(sum(c.weights.values()), 1.0, abs_tol=1e-6):
            problems.append(f"class {c.name}: weights {c.weights} do not sum to 1")
        servable = False
        for name, weight in c.weights.items():
            b = backends.get(name)
            if b is None or c.task_type not in b.tasks or b.max_complexity < c.complexity.max:
                problems.append(f"class {c.name}: weight {weight} on {name}, which cannot serve it")
            elif weight > 0 and b.endpoints:
                servable = True
        if not servable:
            problems.append(f"class {c.name}: no weighted backend with endpoints")
    return table, problems


@dataclass
class Seen:
    resource_version: str
    version: int | None
    problems: list[str]
    table: RoutingTable | None = field(repr=False, default=None)


class TableWatcher:
    """Runs in a thread from `start` to `stop`; `seen` is every ConfigMap state observed, in order."""

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.namespace, self.name = namespace, name
        self.core = kubernetes.client.CoreV1Api(cluster.api_client())
        self.seen: list[Seen] = []
        self.reconnects = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-table-watch", daemon=True)

    def start(self) -> TableWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def latest(self) -> Seen | None:
        with self._lock:
            return self.seen[-1] if self.seen else None

    def latest_version(self) -> int:
        latest = self.latest()
        return latest.version or 0 if latest else 0

    def versions(self) -> dict[int, list[str]]:
        """Table version -> its problems (empty: valid)."""
        with self._lock:
            return {s.version: s.problems for s in self.seen if s.version is not None}

    def problems(self) -> list[str]:
        """Every invalid state seen, and versions that went backwards or changed content under one number."""
        with self._lock:
            seen = list(self.seen)
        found = [
            f"resourceVersion {s.resource_version} (table {s.version}): {p}" for s in seen for p in s.problems
        ]
        hashes: dict[int, str] = {}
        newest = 0
        for s in seen:
            if s.table is None:
                continue
            if hashes.setdefault(s.table.version, s.table.hash) != s.table.hash:
                found.append(f"table version {s.table.version} written twice with different content")
            if s.table.version < newest:
                found.append(f"table version went back from {newest} to {s.table.version}")
            newest = max(newest, s.table.version)
        return found

    def _run(self) -> None:
        field_selector = f"metadata.name={self.name}"
        while not self._stop.is_set():
            try:
                listed = self.core.list_namespaced_config_map(
                    self.namespace, field_selector=field_selector, _request_timeout=10
                )
                for cm in listed.items:
                    self._record(str(cm.metadata.resource_version), cm.data)  # type: ignore[union-attr]
                version = str(listed.metadata.resource_version)  # type: ignore[union-attr]
                while not self._stop.is_set():
                    stream = kubernetes.watch.Watch().stream(
                        self.core.list_namespaced_config_map, self.namespace, field_selector=field_selector,
                        resource_version=version, timeout_seconds=2, _request_timeout=10,
                    )  # fmt: skip
                    for event in stream:
                        cm = event["object"]
                        version = str(cm.metadata.resource_version)
                        if event["type"] == "DELETED":
                            self._record(version, None, deleted=True)
                        elif event["type"] in ("ADDED", "MODIFIED"):
                            self._record(version, cm.data)
            except Exception:  # the apiserver went away, 410 Gone, ...: list again
                self.reconnects += 1
                self._stop.wait(0.2)

    def _record(self, resource_version: str, data: dict[str, str] | None, *, deleted: bool = False) -> None:
        with self._lock:
            if self.seen and self.seen[-1].resource_version == resource_version:
                return  # the same state, listed again after a reconnect
        table, problems = table_problems((data or {}).get(CONFIGMAP_KEY))
        if deleted:
            problems = ["the ConfigMap was deleted"]
        with self._lock:
            self.seen.append(Seen(resource_version, table.version if table else None, problems, table))

"""What `PolicyLoop` needs from the world, as narrow interfaces (the model is Flagger's ``providers.Interface``).

- `MetricsProvider`: the policy's signals for its backends (Prometheus in production, `adapters.PrometheusMetrics`);
- `EndpointSource`: each backend's ready endpoints (`discovery.WatchedEndpoints`);
- `RouteStore`: the live routing table and the controller's saved state, and writing both (`routestore.WatchedRoutes`);
- `StatusWriter`: status subresources and Kubernetes Events (`adapters.KubernetesStatus`);
- `Clock`: wall-clock seconds (``time.time``).

`adapters.kubernetes_ports` builds the production set in one place; tests build in-memory ones. A collaborator
that cannot do its job raises `Unavailable`; the loop then holds what it had (never an empty table).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..api.backend import ModelBackendSpec
from ..api.policy import RoutingPolicySpec
from ..api.table import RoutingTable
from .discovery import Endpoint
from .measure import MeasuredBackend, Measurement

Clock = Callable[[], float]
"""Seconds since the epoch; the loop's only notion of time for decisions, timestamps and staleness."""


class Unavailable(Exception):
    """A collaborator could not answer (API error, conflict, timeout); ``status`` is the HTTP status if any."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LiveTable:
    """What the route store holds for one policy right now."""

    table: RoutingTable | None
    """None: nothing stored yet, or the stored content is not a valid table."""
    revision: str | None
    """Opaque optimistic-concurrency token (the ConfigMap's resourceVersion); None when nothing is stored."""
    problem: str | None = None
    saved_state: str | None = None
    """The controller's state as last saved next to the table (see `savedstate`), unparsed."""


class MetricsProvider(Protocol):
    async def measure(
        self, policy: RoutingPolicySpec, *, namespace: str, backends: Sequence[MeasuredBackend]
    ) -> Measurement:
        """Every signal of every backend; failures are readings in state "error", never exceptions."""
        ...


class EndpointSource(Protocol):
    async def resolve_all(
        self, namespace: str, specs: Mapping[str, ModelBackendSpec]
    ) -> dict[str, list[Endpoint]]:
        """Ready endpoints per backend name, sorted; raises `Unavailable` when it cannot look."""
        ...


class RouteStore(Protocol):
    async def read(self, namespace: str, name: str) -> LiveTable:
        """The live table (LiveTable(None, None) when there is none); raises `Unavailable`."""
        ...

    async def write(
        self,
        namespace: str,
        name: str,
        table: RoutingTable,
        *,
        owner: Mapping[str, str],
        live: LiveTable,
        saved_state: str | None,
    ) -> None:
        """Create or replace the table and the saved state together; raises `Unavailable` (a concurrent change
        included: the next cycle reads again and retries)."""
        ...


class StatusWriter(Protocol):
    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Best effort: failures are logged, an object deleted meanwhile is ignored."""
        ...

    def post_event(self, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """A Kubernetes Event on ``body``'s object; ``kind`` is Normal or Warning."""
        ...


@dataclass(frozen=True)
class Ports:
    metrics: MetricsProvider
    endpoints: EndpointSource
    routes: RouteStore
    status: StatusWriter
    clock: Clock

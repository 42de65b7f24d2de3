"""One control cycle of one RoutingPolicy: discover, measure, decide, write the table, report.

The decision itself is `weights.decide` (pure); this module only gathers its inputs and carries out its result,
through the narrow interfaces of `ports` (production ones from `adapters.kubernetes_ports`, in-memory ones in the
tests). Anything that cannot be measured or reached degrades to "hold what we had": the last good routing table
is never replaced by an empty or invalid one. The controller's memory is saved next to the table (`savedstate`),
so a restarted operator continues where the last one stopped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pydantic

from ..api.backend import ModelBackendSpec, ModelBackendStatus, Signal
from ..api.policy import ClassWeights, PrometheusConnection, RoutingPolicySpec, RoutingPolicyStatus, TableRef
from ..api.table import RoutingTable, TableBackend, TableClass, TableEndpoint, TableQueue
from . import savedstate
from .conditions import condition, merge
from .discovery import Endpoint
from .measure import MeasuredBackend, Measurement, tls_mode
from .metrics import OperatorMetrics
from .ports import LiveTable, Ports, Unavailable
from .validation import validate
from .weights import BackendInput, ControllerState, Decision, Reading, WeightEvent, decide

log = logging.getLogger("zeta.operator")

METRICS_REASONS = {
    "credentials": "CredentialsUnavailable",
    "tls": "PrometheusTLSFailed",
    "auth": "PrometheusAuthFailed",
}
"""MetricsAvailable=False reasons by failure kind; any other failure is PrometheusUnavailable."""

PENDING_GRACE = 10.0
"""Seconds after a policy's first cycle during which a backend it names but the operator has not seen yet
makes it pending instead of InvalidSpec: a policy applied together with its ModelBackends can reach the
operator before they do (two watch streams), and that is not a mistake in the spec."""
PENDING_RECHECK = 1.0
"""How soon a pending policy's cycle runs again (instead of a whole interval later)."""
STATUS_HEARTBEAT = 30.0
"""Seconds after which an unchanged status is written anyway, so its timestamps show the loop is alive."""


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass
class SelectedBackend:
    name: str
    body: Mapping[str, Any]
    spec: ModelBackendSpec
    endpoints: list[Endpoint] = field(default_factory=list)


def select_backends(
    policy: RoutingPolicySpec, bodies: Sequence[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The policy's backends among the namespace's ModelBackends: by name, by label selector, or both."""
    names = set(policy.backends.names or ())
    wanted = policy.backends.selector.match_labels if policy.backends.selector else None
    chosen = []
    for body in bodies:
        meta = body.get("metadata", {})
        labels = meta.get("labels") or {}
        by_name = meta.get("name") in names
        by_label = wanted is not None and all(labels.get(k) == v for k, v in wanted.items())
        if by_name or by_label:
            chosen.append(body)
    return sorted(chosen, key=lambda b: str(b["metadata"]["name"]))


class PolicyLoop:
    """The controller of one RoutingPolicy; holds what must survive between cycles."""

    def __init__(self, *, namespace: str, name: str, ports: Ports, metrics: OperatorMetrics) -> None:
        self.namespace, self.name = namespace, name
        self.ports, self.metrics = ports, metrics
        self.clock, self.post_event = ports.clock, ports.status.post_event
        self.state: ControllerState | None = None
        self.ready_since: dict[str, float] = {}
        self.endpoints: dict[str, list[Endpoint]] = {}
        self.problems: tuple[str, ...] = ()
        self.metrics_ok: bool | None = None
        self.last_cycle_at: float | None = None
        self.transport_warning: str | None = None
        self.first_cycle_at: float | None = None
        self.pending = False
        """The last cycle found backends the policy names missing, within `PENDING_GRACE`: run again soon."""
        self.metrics_problem: str | None = None
        self._reported: dict[
            tuple[str, str], tuple[str, float]
        ] = {}  # (plural, name) -> (coarse status, when)

    # ---------------------------------------------------------------- the cycle

    async def cycle(
        self, body: Mapping[str, Any], backend_bodies: Sequence[Mapping[str, Any]]
    ) -> Decision | None:
        started = time.monotonic()
        result = "ok"
        try:
            decision = await self._cycle(body, backend_bodies)
            if decision is None:
                result = "pending" if self.pending else "invalid"
            return decision
        except Exception:
            result = "error"
            raise
        finally:
            self.last_cycle_at = self.clock()
            self.metrics.cycle(self.namespace, self.name, time.monotonic() - started, result)

    async def _cycle(
        self, body: Mapping[str, Any], backend_bodies: Sequence[Mapping[str, Any]]
    ) -> Decision | None:
        now = self.clock()
        generation = body.get("metadata", {}).get("generation")
        policy, backends, problems = self._parse(body, backend_bodies)
        live = await self.ports.routes.read(self.namespace, self._configmap(body))
        if self.state is None and live.table is not None:
            self._restore(live, live.table, now)
        self.first_cycle_at = self.first_cycle_at or now
        self.pending = (
            bool(problems) and policy is not None and self._awaiting_backends(policy, backend_bodies, now)
        )
        if self.pending:
            log.info(
                "%s/%s: waiting for named backends to appear (%s)", self.namespace, self.name, problems[0]
            )
            return None
        if problems or policy is None:
            await self._report_invalid(body, problems, generation=generation, now=now, live=live)
            return None
        self._clear_invalid(body)

        await self._discover(backends)
        self._note_transport(body, policy)
        measured = await self.ports.metrics.measure(
            policy,
            namespace=self.namespace,
            backends=[
                MeasuredBackend(
                    name=b.name,
                    pods=tuple(sorted({e.pod for e in b.endpoints if e.pod})),
                    engine=b.spec.metrics.engine,
                    overrides=b.spec.metrics.queries,
                )
                for b in backends
            ],
        )
        self.metrics.queries(measured.queries, measured.errors)
        inputs = [self._input(b, measured) for b in backends]
        decision = decide(policy=policy, backends=inputs, previous=self.state, now=now)
        self.state = decision.state

        table = self._table(policy, backends, decision, body)
        table_ref = await self._write_if_changed(body, table, live, now)
        await self._report(
            body, policy, backends, decision, measured, table_ref, generation=generation, now=now
        )
        return decision

    # ---------------------------------------------------------------- inputs

    def _parse(
        self, body: Mapping[str, Any], backend_bodies: Sequence[Mapping[str, Any]]
    ) -> tuple[RoutingPolicySpec | None, list[SelectedBackend], list[str]]:
        problems: list[str] = []
        try:
            policy = RoutingPolicySpec.model_validate(body.get("spec") or {})
        except pydantic.ValidationError as e:
            return None, [], [f"spec: {_short(e)}"]
        backends = []
        for b in select_backends(policy, backend_bodies):
            name = str(b["metadata"]["name"])
            try:
                backends.append(
                    SelectedBackend(name, b, ModelBackendSpec.model_validate(b.get("spec") or {}))
                )
            except pydantic.ValidationError as e:
                problems.append(f"ModelBackend {name}: {_short(e)}")
        problems += validate(policy, {b.name: b.spec for b in backends})
        return policy, backends, problems

    def _awaiting_backends(
        self, policy: RoutingPolicySpec, backend_bodies: Sequence[Mapping[str, Any]], now: float
    ) -> bool:
        """A backend the policy names by name is not in the namespace yet, as far as the operator has seen,
        and the policy's first cycle was less than `PENDING_GRACE` ago."""
        assert self.first_cycle_at is not None
        if now - self.first_cycle_at >= PENDING_GRACE:
            return False
        named = set(policy.backends.names or ())
        for c in policy.classes:
            named |= {*c.preferred, *(c.fallbacks or ())}
        return bool(named - {str(b["metadata"]["name"]) for b in backend_bodies})

    def _restore(self, live: LiveTable, table: RoutingTable, now: float) -> None:
        """After a restart: continue from the saved state and the live table's weights instead of recomputing
        from scratch (no rewrite storm, no repeated events); without a usable saved state, from the weights."""
        weights = {c.name: dict(c.weights) for c in table.classes}
        saved = None
        if live.saved_state is not None:
            try:
                saved = savedstate.decode(live.saved_state)
            except savedstate.Unreadable as problem:
                log.warning(
                    "%s/%s: saved controller state ignored (%s); rebuilding it from the table's weights",
                    self.namespace, self.name, problem,
                )  # fmt: skip
        if saved is None:
            self.state = ControllerState.from_table_weights(weights, now)
        else:
            self.state = savedstate.resume(saved, weights, now)
        for b in table.backends:
            for e in b.endpoints:
                since = _epoch(e.ready_since)
                if since is not None:
                    self.ready_since.setdefault(e.url, since)
        log.info(
            "restored state of %s/%s from table version %d (%s)", self.namespace, self.name, table.version,
            "saved state" if saved is not None else "weights only",
        )  # fmt: skip

    async def _discover(self, backends: list[SelectedBackend]) -> None:
        now = self.clock()
        try:
            found = await self.ports.endpoints.resolve_all(self.namespace, {b.name: b.spec for b in backends})
        except Unavailable as e:
            # Could not look: keep what we knew rather than declaring the backends gone.
            log.warning("endpoint discovery in %s failed (%s); keeping the last known", self.namespace, e)
            found = {b.name: self.endpoints.get(b.name, []) for b in backends}
        for b in backends:
            b.endpoints = found[b.name]
            self.endpoints[b.name] = b.endpoints
            for endpoint in b.endpoints:
                self.ready_since.setdefault(endpoint.url, now)
        live_urls = {e.url for b in backends for e in b.endpoints}
        for url in list(self.ready_since):
            if url not in live_urls:
                del self.ready_since[
                    url
                ]  # it may come back later: that is a new endpoint, with a new blackout

    def _note_transport(self, body: Mapping[str, Any], policy: RoutingPolicySpec) -> None:
        """An unverified certificate, or credentials over plain http, is said once, loudly, when it starts."""
        connection, address = _connection(policy), policy.prometheus.address
        warning: tuple[str, str] | None = None
        if connection.tls == "InsecureSkipVerify":
            warning = (
                "InsecureSkipVerify",
                f"TLS certificate verification of {address} is off "
                "(spec.prometheus.tls.insecureSkipVerify): anyone on the path can impersonate Prometheus",
            )
        elif connection.tls == "Plaintext" and connection.auth != "None":
            warning = (
                "PlaintextCredentials",
                f"{connection.auth} credentials go to {address} over plain http: use an https address",
            )
        if warning is not None and warning[0] != self.transport_warning:
            self.post_event(body, "Warning", *warning)
            log.warning("%s/%s: %s", self.namespace, self.name, warning[1])
        self.transport_warning = warning[0] if warning else None

    def _input(self, b: SelectedBackend, measured: Measurement) -> BackendInput:
        since = [self.ready_since[e.url] for e in b.endpoints if e.url in self.ready_since]
        return BackendInput(
            name=b.name,
            tasks=frozenset(b.spec.capabilities.tasks),
            max_complexity=b.spec.capabilities.max_complexity,
            size_billions=b.spec.size_billions,
            max_concurrency=b.spec.capacity.max_concurrency,
            ready_endpoints=len(b.endpoints),
            newest_ready_since=max(since) if since else None,
            signals=measured.signals.get(b.name, {}),
            latency=measured.latency.get(b.name, {}),
            model=b.spec.model,
        )

    # ---------------------------------------------------------------- the table

    def _configmap(self, body: Mapping[str, Any]) -> str:
        return str(body["spec"]["routingTable"]["configMapName"])

    def _table(
        self,
        policy: RoutingPolicySpec,
        backends: list[SelectedBackend],
        decision: Decision,
        body: Mapping[str, Any],
    ) -> RoutingTable:
        return RoutingTable(
            policy=f"{self.namespace}/{self.name}",
            default_class=policy.default_class,
            classifier=policy.classifier,
            queue=TableQueue.of(policy.queue),
            backends=[
                TableBackend(
                    name=b.name,
                    model=b.spec.model,
                    tasks=list(b.spec.capabilities.tasks),
                    max_complexity=b.spec.capabilities.max_complexity,
                    context_window=b.spec.capabilities.context_window,
                    endpoints=[
                        TableEndpoint(
                            url=e.url,
                            max_concurrency=b.spec.capacity.max_concurrency,
                            ready_since=rfc3339(self.ready_since[e.url])
                            if e.url in self.ready_since
                            else None,
                        )
                        for e in b.endpoints
                    ],
                    state=decision.backend_states.get(b.name, "Unknown"),
                    size_billions=b.spec.size_billions,
                    cost=b.spec.cost,
                )
                for b in backends
            ],
            classes=[
                TableClass.of(
                    c,
                    decision.weights.get(c.name, {}),
                    # Only the kind of reason goes into the table: live numbers would change its hash every cycle.
                    {k: v.split(":")[0] for k, v in decision.reasons.get(c.name, {}).items()},
                )
                for c in policy.classes
            ],
        )

    async def _write_if_changed(
        self, body: Mapping[str, Any], table: RoutingTable, live: LiveTable, now: float
    ) -> TableRef | None:
        """Write the table when its content changed, with the controller's state; an unchanged table is
        rewritten (same version, same content) only when the state is due for saving (`savedstate.due`)."""
        name = self._configmap(body)
        if not any(c.weights for c in table.classes):
            log.warning(
                "%s/%s: no class has a reachable backend; keeping the live table", self.namespace, self.name
            )
            return _ref(name, live.table)
        assert self.state is not None, "called after decide"
        saved = savedstate.encode(self.state)
        if saved is None:
            log.warning("%s/%s: controller state too large to save", self.namespace, self.name)
        digest = table.content_hash()
        if live.table is not None and live.table.hash == digest:
            if saved is not None and savedstate.due(live.saved_state, self.state, now):
                await self._store(body, live.table, live, saved)
            return _ref(name, live.table)
        version = (live.table.version if live.table else 0) + 1
        sealed = table.sealed(version=version, generated_at=rfc3339(now))
        if not await self._store(body, sealed, live, saved):
            return _ref(name, live.table)
        self.metrics.table_written(self.namespace, self.name, version)
        return TableRef(config_map=name, version=version, hash=digest)

    async def _store(
        self, body: Mapping[str, Any], table: RoutingTable, live: LiveTable, saved: str | None
    ) -> bool:
        name = self._configmap(body)
        owner = {"name": self.name, "uid": str(body["metadata"]["uid"])}
        try:
            await self.ports.routes.write(
                self.namespace, name, table, owner=owner, live=live, saved_state=saved
            )
        except Unavailable as e:
            log.warning("writing table %s/%s failed (%s); retrying next cycle", self.namespace, name, e)
            return False
        return True

    # ---------------------------------------------------------------- reporting

    async def _report_invalid(
        self,
        body: Mapping[str, Any],
        problems: list[str],
        *,
        generation: int | None,
        now: float,
        live: LiveTable,
    ) -> None:
        message = "; ".join(problems)[:4000]
        if tuple(problems) != self.problems:
            self.post_event(
                body, "Warning", "InvalidSpec", f"{message} (the last good routing table stays in force)"
            )
            log.warning("%s/%s invalid: %s", self.namespace, self.name, message)
        self.problems = tuple(problems)
        stamp = rfc3339(now)
        previous = _status(body)
        status = previous.model_copy(
            update={
                "observed_generation": generation,
                "last_updated": stamp,
                "conditions": merge(
                    previous.conditions,
                    [
                        condition(
                            "InvalidSpec", True, "ValidationFailed", message, now=stamp, generation=generation
                        ),
                        condition(
                            "Ready",
                            False,
                            "InvalidSpec",
                            "spec is invalid; last good table kept",
                            now=stamp,
                            generation=generation,
                        ),
                    ],
                ),
            }
        )
        await self._patch_status("routingpolicies", self.name, status.to_wire())

    def _clear_invalid(self, body: Mapping[str, Any]) -> None:
        if self.problems:
            self.post_event(body, "Normal", "SpecValid", "spec is valid again")
        self.problems = ()

    async def _report(
        self,
        body: Mapping[str, Any],
        policy: RoutingPolicySpec,
        backends: list[SelectedBackend],
        decision: Decision,
        measured: Measurement,
        table_ref: TableRef | None,
        *,
        generation: int | None,
        now: float,
    ) -> None:
        stamp = rfc3339(now)
        for event in decision.events:
            self._post_weight_event(body, backends, event)
        problem = None if decision.metrics_available else (measured.unreachable or "no usable reading")
        # A refused password, certificate or Secret is said each time it changes; an outage once.
        refused = measured.failure_kind in METRICS_REASONS
        if decision.metrics_available and self.metrics_ok is False:
            self.post_event(body, "Normal", "MetricsRecovered", "Prometheus answers again")
            log.info("%s/%s: Prometheus answers again", self.namespace, self.name)
        elif problem is not None and (self.metrics_ok or (refused and problem != self.metrics_problem)):
            self.post_event(
                body, "Warning", "MetricsUnavailable", f"{problem}; holding the last good weights"
            )
            log.warning("%s/%s: %s; holding the last good weights", self.namespace, self.name, problem)
        self.metrics_ok = decision.metrics_available
        self.metrics_problem = problem
        self.metrics.weights(
            self.namespace, self.name, {c.name: decision.weights.get(c.name, {}) for c in policy.classes}
        )

        previous = _status(body)
        metrics_msg = (
            "all queries answered" if decision.metrics_available else (measured.unreachable or "no data")
        )
        degraded = decision.stale or not decision.metrics_available
        degraded_msg = (
            "static preferences: measurements older than the staleness limit"
            if decision.stale
            else (f"holding the last good weights: {metrics_msg}" if degraded else "")
        )
        ready = table_ref is not None
        conditions = [
            condition("Ready", ready, "TableWritten" if ready else "NoTable",
                      f"routing table version {table_ref.version}" if table_ref else "no routing table yet",
                      now=stamp, generation=generation),
            condition("MetricsAvailable", decision.metrics_available,
                      "Measured" if decision.metrics_available else
                      METRICS_REASONS.get(measured.failure_kind or "", "PrometheusUnavailable"), metrics_msg,
                      now=stamp, generation=generation),
            condition("Degraded", degraded, "StaticFallback" if decision.stale else ("HoldingWeights" if degraded else
                      "AsDesigned"), degraded_msg, now=stamp, generation=generation),
            condition("InvalidSpec", False, "Valid", "", now=stamp, generation=generation),
        ]  # fmt: skip
        status = RoutingPolicyStatus(
            classes=[
                ClassWeights(
                    name=c.name,
                    weights=decision.weights.get(c.name, {}),
                    reasons=decision.reasons.get(c.name, {}),
                    offloading=decision.offloading.get(c.name, False),
                )
                for c in policy.classes
            ],
            weights_summary=_summary(policy, decision)[:1024],
            backend_count=len(backends),
            table=table_ref,
            observed_generation=generation,
            last_updated=stamp,
            conditions=merge(previous.conditions, conditions),
            prometheus=_connection(policy),
        )
        await self._patch_if_changed("routingpolicies", self.name, status.to_wire(), now)
        for b in backends:
            await self._report_backend(b, decision, measured, now=now)

    async def _report_backend(
        self, b: SelectedBackend, decision: Decision, measured: Measurement, *, now: float
    ) -> None:
        stamp = rfc3339(now)
        signals = {
            signal: Signal(
                value=r.value if r.state == "ok" else None,
                state=r.state,
                observed_at=stamp,
                message="" if r.state == "ok" else ("query failed" if r.state == "error" else "no series"),
            )
            for signal, r in measured.signals.get(b.name, {}).items()
        }
        load = decision.loads.get(b.name)
        status = ModelBackendStatus(
            state=decision.backend_states.get(b.name, "Unknown"),
            load=round(load, 3) if load is not None else None,
            ready_endpoints=[e.url for e in b.endpoints][:256],
            endpoint_count=len(b.endpoints),
            signals=signals,
            observed_generation=b.body.get("metadata", {}).get("generation"),
            last_updated=stamp,
        )
        await self._patch_if_changed("modelbackends", b.name, status.to_wire(), now)

    async def _patch_if_changed(self, plural: str, name: str, status: dict[str, Any], now: float) -> None:
        """Patch when something a person would notice changed, else at most every STATUS_HEARTBEAT seconds:
        a status write per backend per cycle would cost the API server more than the whole control loop."""
        key = json.dumps(_coarse(status), sort_keys=True)
        previous = self._reported.get((plural, name))
        if previous is not None and previous[0] == key and now - previous[1] < STATUS_HEARTBEAT:
            return
        await self._patch_status(plural, name, status)
        self._reported[(plural, name)] = (key, now)

    def _post_weight_event(
        self, body: Mapping[str, Any], backends: list[SelectedBackend], e: WeightEvent
    ) -> None:
        target = next((b.body for b in backends if b.name == e.backend), body) if e.backend else body
        self.post_event(target, "Warning" if e.warning else "Normal", e.reason, e.message)

    async def _patch_status(self, plural: str, name: str, status: dict[str, Any]) -> None:
        await self.ports.status.patch_status(plural, self.namespace, name, status)


def _coarse(value: Any) -> Any:
    """A status with timestamps dropped and numbers rounded: what decides whether it is worth writing."""
    if isinstance(value, dict):
        return {
            k: _coarse(v)
            for k, v in value.items()
            if k not in ("lastUpdated", "observedAt", "lastTransitionTime")
        }
    if isinstance(value, list):
        return [_coarse(v) for v in value]
    if isinstance(value, float):
        return round(value, 2)
    return value


def _status(body: Mapping[str, Any]) -> RoutingPolicyStatus:
    try:
        return RoutingPolicyStatus.model_validate(body.get("status") or {})
    except pydantic.ValidationError:
        return RoutingPolicyStatus()


def _connection(policy: RoutingPolicySpec) -> PrometheusConnection:
    settings = policy.prometheus
    auth = "BasicAuth" if settings.basic_auth else ("BearerToken" if settings.bearer_token else "None")
    return PrometheusConnection(tls=tls_mode(settings.address, settings.tls.insecure_skip_verify), auth=auth)


def _ref(name: str, table: RoutingTable | None) -> TableRef | None:
    return TableRef(config_map=name, version=table.version, hash=table.hash) if table else None


def _summary(policy: RoutingPolicySpec, decision: Decision) -> str:
    parts = []
    for c in policy.classes:
        shares = sorted(decision.weights.get(c.name, {}).items(), key=lambda kv: (-kv[1], kv[0]))
        parts.append(f"{c.name}: " + " ".join(f"{b}={w:.2f}" for b, w in shares if w > 0))
    return "; ".join(parts)


def _short(e: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()[:5])


__all__ = ["PolicyLoop", "Reading", "select_backends"]

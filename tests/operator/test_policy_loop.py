"""`PolicyLoop` in process: the real loop, parser, decision and table code, with in-memory implementations of
its ports (`zeta_operator.operator.ports`) and a clock the test moves. No sleeps, no threads, no network: each
test drives whole control cycles and asserts on what the loop wrote (tables, saved state, statuses, events).

The same behaviours run end to end, against a real API server and Prometheus, in test_operator_e2e.py.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from zeta_operator.api.backend import ModelBackendSpec
from zeta_operator.api.policy import RoutingPolicySpec
from zeta_operator.api.table import RoutingTable
from zeta_operator.operator import savedstate
from zeta_operator.operator.controller import PENDING_GRACE, PolicyLoop
from zeta_operator.operator.discovery import Endpoint, resolve
from zeta_operator.operator.measure import PER_BACKEND_SIGNALS, PER_POD_SIGNALS, MeasuredBackend, Measurement
from zeta_operator.operator.metrics import OperatorMetrics
from zeta_operator.operator.ports import LiveTable, Ports, Unavailable
from zeta_operator.operator.weights import ControllerState, Decision, Reading

REPO = Path(__file__).resolve().parents[2]
NAMESPACE = "ns"

# --- in-memory ports ----------------------------------------------------------------------------------------

QUEUE_THRESHOLD = 8.0
"""The policy's default ``thresholds.queueDepth``: a queue of 8 per endpoint is load 1.0."""


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class InMemoryMetrics:
    """Each backend's load (as a queue depth against the default threshold); ``down`` answers like a
    Prometheus that refuses connections."""

    def __init__(self) -> None:
        self.loads: dict[str, float] = {}
        self.latency: dict[str, dict[str, float]] = {}
        """backend -> class -> latency quantile in seconds (none unless a test sets it)."""
        self.down = False
        self.calls = 0

    async def measure(
        self, policy: RoutingPolicySpec, *, namespace: str, backends: Sequence[MeasuredBackend]
    ) -> Measurement:
        self.calls += 1
        out = Measurement()
        for b in backends:
            out.latency[b.name] = {c: Reading(v, "ok") for c, v in self.latency.get(b.name, {}).items()}
            if self.down:
                out.signals[b.name] = {
                    s: Reading(None, "error") for s in (*PER_POD_SIGNALS, *PER_BACKEND_SIGNALS)
                }
            elif b.name in self.loads:
                out.signals[b.name] = {"queueDepth": Reading(self.loads[b.name] * QUEUE_THRESHOLD, "ok")}
            else:
                out.signals[b.name] = {"queueDepth": Reading(None, "no-data")}
        if self.down:
            out.unreachable = "cannot reach http://prometheus.invalid: ConnectionError"
            out.failed("connection")
        return out


class InMemoryEndpoints:
    """Static endpoints as the specs give them, and pod/service endpoints the test sets by backend name."""

    def __init__(self) -> None:
        self.by_backend: dict[str, list[Endpoint]] = {}
        self.failing = False

    async def resolve_all(
        self, namespace: str, specs: Mapping[str, ModelBackendSpec]
    ) -> dict[str, list[Endpoint]]:
        if self.failing:
            raise Unavailable("listing pods: Forbidden", status=403)
        return {name: self.by_backend.get(name, resolve(spec, [], [])) for name, spec in specs.items()}


@dataclass
class StoredTable:
    text: str
    saved_state: str | None
    revision: int


class InMemoryRouteStore:
    """Tables by (namespace, name) as JSON text, with a revision checked on every write like resourceVersion."""

    def __init__(self) -> None:
        self.stored: dict[tuple[str, str], StoredTable] = {}
        self.writes: list[tuple[str, int]] = []  # (name, table version) per successful write
        self.refuse_writes = 0  # the next this-many writes fail as if from a stale view (409)
        self._revision = 0

    async def read(self, namespace: str, name: str) -> LiveTable:
        found = self.stored.get((namespace, name))
        if found is None:
            return LiveTable(None, None)
        return LiveTable(RoutingTable.from_json(found.text), str(found.revision), None, found.saved_state)

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
        current = self.stored.get((namespace, name))
        if self.refuse_writes:
            self.refuse_writes -= 1
            raise Unavailable(f"ConfigMap {namespace}/{name}: the object has been modified", status=409)
        if (str(current.revision) if current else None) != live.revision:
            raise Unavailable(f"ConfigMap {namespace}/{name} changed meanwhile", status=409)
        self._revision += 1
        self.stored[(namespace, name)] = StoredTable(table.to_json(), saved_state, self._revision)
        self.writes.append((name, table.version))

    def table(self, namespace: str, name: str) -> RoutingTable | None:
        found = self.stored.get((namespace, name))
        return RoutingTable.from_json(found.text) if found else None

    def copy(self) -> InMemoryRouteStore:
        """What a new operator process would find: the same stored objects, no write history."""
        other = InMemoryRouteStore()
        other.stored = copy.deepcopy(self.stored)
        other._revision = self._revision
        return other


@dataclass
class PostedEvent:
    object: str
    kind: str
    reason: str
    message: str


@dataclass
class InMemoryStatus:
    statuses: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (plural, name) -> status
    events: list[PostedEvent] = field(default_factory=list)
    patches: int = 0

    async def patch_status(self, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.patches += 1
        self.statuses[(plural, name)] = copy.deepcopy(dict(status))

    def post_event(self, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        self.events.append(PostedEvent(str(body["metadata"]["name"]), kind, reason, message))

    def reasons(self) -> list[str]:
        return [e.reason for e in self.events]

    def of(self, reason: str, task_class: str | None = None) -> list[PostedEvent]:
        return [
            e
            for e in self.events
            if e.reason == reason and (task_class is None or e.message.startswith(f"{task_class}:"))
        ]


# --- the rig: one policy, the sample fleet, whole cycles ------------------------------------------------------

INTERVAL = 5.0
STALE_AFTER = 60.0
MAX_STEP = 0.2
POLICY_SPEC: dict[str, Any] = {
    **yaml.safe_load((REPO / "manifests/samples/routingpolicy.yaml").read_text())["spec"],
    "adaptation": {"interval": "5s", "staleAfter": "60s", "smoothing": 0.5, "maxStep": MAX_STEP},
}
QUIET = {"general-4b": 0.2, "coder-7b": 0.3, "large-14b": 0.2}


def sample_backends() -> list[dict[str, Any]]:
    """The sample ModelBackends, each with one static endpoint instead of its Service."""
    out = []
    for i, name in enumerate(("general-4b", "coder-7b", "large-14b")):
        doc = yaml.safe_load((REPO / f"manifests/samples/{name}.yaml").read_text())
        doc["spec"]["endpoints"] = {"static": [f"http://10.0.0.{i + 1}:8000"]}
        doc["metadata"].update(namespace=NAMESPACE, uid=f"uid-{name}", generation=1)
        out.append(doc)
    return out


@dataclass
class Rig:
    """A `PolicyLoop` on in-memory ports; `cycle` moves the clock one interval and runs one control cycle."""

    clock: FakeClock = field(default_factory=FakeClock)
    metrics: InMemoryMetrics = field(default_factory=InMemoryMetrics)
    endpoints: InMemoryEndpoints = field(default_factory=InMemoryEndpoints)
    routes: InMemoryRouteStore = field(default_factory=InMemoryRouteStore)
    status: InMemoryStatus = field(default_factory=InMemoryStatus)
    spec: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(POLICY_SPEC))
    backends: list[dict[str, Any]] = field(default_factory=sample_backends)
    generation: int = 1

    def __post_init__(self) -> None:
        ports = Ports(
            metrics=self.metrics,
            endpoints=self.endpoints,
            routes=self.routes,
            status=self.status,
            clock=self.clock,
        )
        self.loop = PolicyLoop(namespace=NAMESPACE, name="demo", ports=ports, metrics=OperatorMetrics())

    def body(self) -> dict[str, Any]:
        return {
            "apiVersion": "zeta.dev/v1alpha1",
            "kind": "RoutingPolicy",
            "metadata": {
                "name": "demo",
                "namespace": NAMESPACE,
                "uid": "uid-demo",
                "generation": self.generation,
            },
            "spec": copy.deepcopy(self.spec),
            "status": copy.deepcopy(self.status.statuses.get(("routingpolicies", "demo"), {})),
        }

    def cycle(self) -> Decision | None:
        self.clock.advance(INTERVAL)
        return asyncio.run(self.loop.cycle(self.body(), self.backends))

    def decided(self) -> Decision:
        decision = self.cycle()
        assert decision is not None, self.status.statuses.get(("routingpolicies", "demo"))
        return decision

    def until(self, done: Callable[[Decision], bool], *, what: str, limit: int = 100) -> Decision:
        for _ in range(limit):
            decision = self.decided()
            if done(decision):
                return decision
        raise AssertionError(f"no {what} within {limit} cycles; shares now {self.shares()}")

    def table(self) -> RoutingTable:
        table = self.routes.table(NAMESPACE, POLICY_SPEC["routingTable"]["configMapName"])
        assert table is not None
        return table

    def stored(self) -> StoredTable:
        return self.routes.stored[(NAMESPACE, POLICY_SPEC["routingTable"]["configMapName"])]

    def shares(self, task_class: str = "code-simple") -> dict[str, float]:
        return dict(next(c for c in self.table().classes if c.name == task_class).weights)

    def condition(self, kind: str) -> dict[str, Any]:
        status = self.status.statuses[("routingpolicies", "demo")]
        return next(c for c in status["conditions"] if c["type"] == kind)

    def restarted(self) -> Rig:
        """A new operator process: what the API server holds (tables, saved state, statuses) and nothing else."""
        status = InMemoryStatus(statuses=copy.deepcopy(self.status.statuses))
        metrics = InMemoryMetrics()
        metrics.loads = dict(self.metrics.loads)
        return Rig(
            clock=FakeClock(self.clock.now),
            metrics=metrics,
            routes=self.routes.copy(),
            status=status,
            spec=copy.deepcopy(self.spec),
            generation=self.generation,
        )


def offloading(task_class: str = "code-simple") -> Callable[[Decision], bool]:
    return lambda d: d.offloading[task_class]


def overloaded_rig() -> Rig:
    """coder-7b far above the band until code-simple has shed most of its share to the fallbacks."""
    rig = Rig()
    rig.metrics.loads = dict(QUIET)
    rig.decided()
    rig.metrics.loads["coder-7b"] = 1.5
    rig.until(lambda d: d.offloading["code-simple"] and rig.shares()["coder-7b"] < 0.5, what="offload")
    return rig


# --- the behaviours -----------------------------------------------------------------------------------------


def test_offload_starts_and_stops_with_hysteresis() -> None:
    rig = Rig()
    rig.metrics.loads = dict(QUIET)
    for _ in range(3):
        assert not rig.decided().offloading["code-simple"]
    static = rig.shares()
    assert static["coder-7b"] > 0.9

    rig.metrics.loads["coder-7b"] = 1.5
    rig.until(offloading(), what="OffloadStarted")
    rig.until(lambda d: rig.shares()["coder-7b"] < 0.5, what="shedding")
    assert len(rig.status.of("OffloadStarted", "code-simple")) == 1

    # Inside the band [lowWatermark, highWatermark] nothing starts, stops or moves.
    rig.metrics.loads["coder-7b"] = 0.7
    for _ in range(8):  # the smoothed load settles into the band
        rig.decided()
    held = rig.shares()
    for _ in range(10):
        assert rig.decided().offloading["code-simple"]
        assert rig.shares() == held
    assert not rig.status.of("OffloadStopped", "code-simple")

    # Below the band the preferred share grows back by at most maxStep per interval, then the offload stops.
    rig.metrics.loads["coder-7b"] = 0.2
    growth = [held["coder-7b"]]

    def stopped(d: Decision) -> bool:
        growth.append(rig.shares()["coder-7b"])
        return not d.offloading["code-simple"]

    rig.until(stopped, what="OffloadStopped")
    steps = [b - a for a, b in itertools.pairwise(growth)]
    assert all(-1e-4 <= s <= MAX_STEP + 1e-4 for s in steps), steps
    assert len(steps) >= 2  # returned over several intervals, not thrown back in one
    assert rig.shares() == pytest.approx(static, abs=1e-3)
    assert len(rig.status.of("OffloadStopped", "code-simple")) == 1
    assert len(rig.status.of("OffloadStarted", "code-simple")) == 1


def test_a_backend_slowed_by_a_cotenant_sheds_chat_to_a_fallback_and_gets_it_back() -> None:
    """The 4B's engine is nearly idle (its queue well below the low watermark) but its chat answers take 6 s
    against the 4 s objective: something else on its node slows it. The coder looks busy by its worst class
    (code-complex in 13.5 s against 15 s) yet answers chat in 1.5 s, so chat moves there; once the 4B answers
    in time again, chat comes back at maxStep per interval and the offload stops."""
    rig = Rig()
    rig.metrics.loads = dict(QUIET)
    rig.decided()
    static, summaries = rig.shares("chat-simple"), rig.shares("summarize")
    rig.metrics.latency = {
        "general-4b": {"chat-simple": 6.0},
        "coder-7b": {"chat-simple": 1.5, "code-complex": 13.5},
        "large-14b": {"chat-simple": 20.0, "summarize": 20.0},
    }
    rig.until(lambda d: rig.shares("chat-simple")["general-4b"] < 0.3, what="chat shed from the 4B")
    assert rig.shares("chat-simple")["coder-7b"] > 0.6
    assert rig.shares("chat-simple")["large-14b"] < 0.1  # the busy 14B is no better a home for chat
    assert rig.shares("summarize") == summaries  # summaries have nowhere better to go

    rig.metrics.latency["general-4b"] = {"chat-simple": 0.8}
    rig.until(lambda d: not d.offloading["chat-simple"], what="OffloadStopped")
    assert rig.shares("chat-simple") == pytest.approx(static, abs=1e-3)


def test_prometheus_outage_holds_then_falls_back_to_static_then_recovers() -> None:
    quiet = Rig()
    quiet.metrics.loads = dict(QUIET)
    quiet.decided()
    static = quiet.table()

    rig = overloaded_rig()
    held = rig.table()
    last_good = rig.clock.now
    rig.metrics.down = True
    decision = rig.decided()
    assert not decision.metrics_available and not decision.stale
    assert rig.condition("MetricsAvailable")["status"] == "False"
    assert (rig.condition("Degraded")["status"], rig.condition("Degraded")["reason"]) == (
        "True",
        "HoldingWeights",
    )
    assert len(rig.status.of("MetricsUnavailable")) == 1

    while rig.clock.now + INTERVAL - last_good <= STALE_AFTER:  # held, exactly, up to staleAfter
        assert not rig.decided().stale
        assert [c.weights for c in rig.table().classes] == [c.weights for c in held.classes]

    decision = rig.decided()
    assert decision.stale and not any(decision.offloading.values())
    assert rig.condition("Degraded")["reason"] == "StaticFallback"
    rig.until(
        lambda d: all(rig.shares(c.name) == pytest.approx(dict(c.weights), abs=1e-3) for c in static.classes),
        what="static preferences",
    )
    assert len(rig.status.of("StaticFallback")) == 1
    assert len(rig.status.of("MetricsUnavailable")) == 1

    rig.metrics.down = False
    rig.metrics.loads = dict(QUIET)
    decision = rig.decided()
    assert decision.metrics_available and not decision.stale
    assert rig.condition("MetricsAvailable")["status"] == "True"
    assert rig.condition("Degraded")["status"] == "False"
    assert len(rig.status.of("MetricsRecovered")) == 1


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        # Passes the CRD schema and pydantic; only the operator's validation can tell.
        (lambda spec: spec["classes"][4].update(preferred=["general-4b"]), "general-4b"),
        (lambda spec: spec["adaptation"].update(maxStep=3), "adaptation.maxStep"),
    ],
    ids=["cannot-serve", "out-of-range"],
)
def test_invalid_spec_reports_InvalidSpec_and_the_last_good_table_stays(
    edit: Callable[[dict[str, Any]], None], problem: str
) -> None:
    rig = Rig()
    rig.metrics.loads = dict(QUIET)
    rig.decided()
    good, writes = rig.stored().text, len(rig.routes.writes)

    edit(rig.spec)
    rig.generation += 1
    rig.metrics.loads["coder-7b"] = 1.5  # would move the weights, if the loop acted on an invalid spec
    for _ in range(3):
        assert rig.cycle() is None
    invalid = rig.condition("InvalidSpec")
    assert invalid["status"] == "True" and problem in invalid["message"]
    assert invalid["observedGeneration"] == 2
    assert rig.condition("Ready")["status"] == "False"
    assert rig.stored().text == good and len(rig.routes.writes) == writes
    assert len(rig.status.of("InvalidSpec")) == 1  # once per distinct problem, not once per cycle

    rig.spec = copy.deepcopy(POLICY_SPEC)
    rig.generation += 1
    rig.decided()
    assert rig.condition("InvalidSpec")["status"] == "False"
    assert rig.status.reasons()[-1] == "SpecValid" or "SpecValid" in rig.status.reasons()


def test_a_restart_mid_offload_resumes_it_without_snapping_back() -> None:
    rig = overloaded_rig()
    saved = json.loads(rig.stored().saved_state or "{}")
    assert saved["version"] == savedstate.FORMAT_VERSION
    assert saved["state"]["offloading"]["code-simple"] is True and "coder-7b" in saved["state"]["overloaded"]
    assert "weights" not in saved["state"]  # the table holds them

    restarted = rig.restarted()
    writes = len(rig.routes.writes)
    for _ in range(6):  # the old process, had it lived, and the new one see the same fleet
        kept, resumed = rig.decided(), restarted.decided()
        assert resumed.offloading == kept.offloading
        for task_class, shares in kept.weights.items():
            assert resumed.weights[task_class] == pytest.approx(shares, abs=2e-3), task_class
        assert resumed.state.overloaded == kept.state.overloaded
    assert restarted.status.events == []  # no second OffloadStarted, no second BackendOverloaded
    assert len(restarted.routes.writes) <= len(rig.routes.writes) - writes  # no more writes than without it
    assert restarted.shares()["coder-7b"] < 0.5


def test_an_unreadable_saved_state_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    rig = overloaded_rig()
    before = rig.shares()
    restarted = rig.restarted()
    entry = restarted.stored()
    restarted.routes.stored[(NAMESPACE, POLICY_SPEC["routingTable"]["configMapName"])] = StoredTable(
        entry.text, '{"version": 99, "state": {}}', entry.revision
    )
    with caplog.at_level(logging.WARNING, logger="zeta.operator"):
        decision = restarted.decided()
    assert any(
        "saved controller state ignored" in r.getMessage() and "99" in r.getMessage() for r in caplog.records
    )
    # Rebuilt from the table's weights: still offloading, moving on from where traffic was.
    assert decision.offloading["code-simple"]
    assert restarted.shares()["coder-7b"] == pytest.approx(before["coder-7b"], abs=MAX_STEP)
    assert json.loads(restarted.stored().saved_state or "{}")["version"] == savedstate.FORMAT_VERSION


def test_a_steady_loop_saves_its_state_at_most_every_SAVE_EVERY_seconds() -> None:
    rig = overloaded_rig()
    for _ in range(20):  # converge: the share reaches its bound and the table stops changing
        rig.decided()
    version, writes = rig.table().version, len(rig.routes.writes)
    cycles = 30
    for _ in range(cycles):
        rig.decided()
    assert rig.table().version == version
    assert len(rig.routes.writes) - writes <= cycles * INTERVAL / savedstate.SAVE_EVERY + 1
    assert len(rig.routes.writes) - writes >= 1  # but the smoothed loads are saved now and then

    rig.metrics.down = True  # a flag changed: saved at once, not at the next heartbeat
    rig.decided()
    assert json.loads(rig.stored().saved_state or "{}")["state"]["lastGoodAt"] < rig.clock.now


def test_a_refused_write_keeps_the_last_good_table_and_is_retried_next_cycle() -> None:
    rig = Rig()
    rig.metrics.loads = dict(QUIET)
    rig.decided()
    before = rig.table()
    rig.metrics.loads["coder-7b"] = 1.5  # the weights move
    rig.routes.refuse_writes = 1
    rig.decided()
    assert rig.table() == before
    assert rig.status.statuses[("routingpolicies", "demo")]["table"]["version"] == before.version
    rig.decided()
    assert rig.table().version == before.version + 1
    assert rig.status.statuses[("routingpolicies", "demo")]["table"]["version"] == before.version + 1


def test_endpoint_discovery_failing_keeps_the_last_known_endpoints() -> None:
    rig = Rig()
    rig.metrics.loads = dict(QUIET)
    rig.decided()
    before = rig.table()
    rig.endpoints.failing = True
    rig.decided()
    assert [b.endpoints for b in rig.table().backends] == [b.endpoints for b in before.backends]


# --- the saved state itself ---------------------------------------------------------------------------------


def test_saved_state_round_trips_without_weights_and_is_bounded() -> None:
    state = ControllerState(
        weights={"a": {"x": 1.0}}, loads={"x": 0.42}, measured_at={"x": 10.0}, offloading={"a": True},
        last_good_at=10.0, stale=False, overloaded=frozenset({"x"}), decided_at=10.0,
    )  # fmt: skip
    text = savedstate.encode(state)
    assert text is not None
    back = savedstate.decode(text)
    assert back.loads == {"x": 0.42} and back.offloading == {"a": True} and back.overloaded == {"x"}
    assert back.weights == {}
    huge = ControllerState(loads={f"backend-{i:05d}": 0.123456789 for i in range(5000)})
    assert savedstate.encode(huge) is None
    for bad in ("not json", "[]", '{"version": 2, "state": {}}', '{"version": 1}'):
        with pytest.raises(savedstate.Unreadable):
            savedstate.decode(bad)


def test_resume_keeps_an_outage_clock_running_but_not_a_good_one() -> None:
    measuring = ControllerState(last_good_at=100.0, decided_at=100.0)
    in_outage = ControllerState(last_good_at=50.0, decided_at=100.0)
    assert savedstate.resume(measuring, {"a": {"x": 1.0}}, 500.0).last_good_at == 500.0
    resumed = savedstate.resume(in_outage, {"a": {"x": 1.0}}, 500.0)
    assert resumed.last_good_at == 50.0 and resumed.weights == {"a": {"x": 1.0}}


def test_a_policy_applied_with_its_backends_waits_for_them_instead_of_reporting_InvalidSpec() -> None:
    """docs/fuzzing.md, finding 3: a policy's first cycle can run before the operator's ModelBackend index
    holds the backends applied with it. It is pending (looked at again within a second), not InvalidSpec."""
    rig = Rig()
    rig.metrics.loads = dict(QUIET)
    arriving, rig.backends = rig.backends, rig.backends[:1]  # the index has seen one of three so far
    assert rig.cycle() is None
    assert rig.loop.pending
    assert (
        "routingpolicies",
        "demo",
    ) not in rig.status.statuses and "InvalidSpec" not in rig.status.reasons()
    rig.backends = arriving
    rig.decided()
    assert not rig.loop.pending
    assert "InvalidSpec" not in rig.status.reasons()
    assert rig.table().version == 1


def test_a_backend_that_never_arrives_is_InvalidSpec_after_the_grace() -> None:
    rig = Rig()
    rig.metrics.loads = dict(QUIET)
    rig.backends = [b for b in rig.backends if b["metadata"]["name"] != "large-14b"]
    cycles = 0
    while rig.cycle() is None and rig.loop.pending:
        cycles += 1
        assert cycles < 100, "pending forever"
    assert not rig.loop.pending
    assert rig.clock.now - rig.loop.first_cycle_at >= PENDING_GRACE  # type: ignore[operator]
    invalid = rig.condition("InvalidSpec")
    assert invalid["status"] == "True" and "large-14b" in invalid["message"]

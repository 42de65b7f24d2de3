"""The discrete-event mode: the routing benchmark in simulated time, with no processes.

What runs is the real code wherever it is pure:

- each engine is the simulator's own continuous-batching state machine (`zeta_sim.scheduler.Scheduler`
  with `sim/latency.py`'s model): batching slowdown, FIFO wait beyond ``max_seqs``, injected stall;
- the router's choice is `router.balancer` (`ClassRoute`, `choose`, and the ``--strategy`` baselines), its
  in-flight and ejection bookkeeping is `router.endpoints.EndpointTracker`, its priority queue is
  `router.queue.WaitQueue`, mirrored the way `router.admission.Admission` uses them (a freed slot goes to the
  best waiter that may use it; max wait, then 429);
- each request carries a held-out labelled prompt and is classified by the router's own code
  (`router_classification`: `parse_request` and the table's `Classifier`), then filtered by the classified
  complexity; it is scored by its true labels;
- the router runs as ``scenario.routers`` replicas, each with its own tracker, queue and picker (a request goes
  to one at random, as a Service spreads connections); they share the routing table;
- external load (``scenario.externals``) is submitted straight to an engine, past every router;
- Zeta's operator is `operator.weights.decide` every control interval, on the readings Prometheus would hold:
  engine gauges (waiting, running, KV use) sampled every scrape interval and the router's latency and error
  rate over the query window, as of the last scrape (so the data is as late as in the real loop), and the
  table reaches the router after a propagation delay.

Modelled, not run: HTTP and process overheads (none), the router's retry on a dropped connection (immediate),
a crashed engine refusing connections (instant failure, counted for ejection), readiness (the pod turns
NotReady ``notready_after`` seconds after a crash, as a kubelet's probe would report it).
"""

from __future__ import annotations

import functools
import heapq
import importlib
import inspect
import itertools
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from zeta_operator.api.common import parse_duration
from zeta_operator.api.table import RoutingTable, TableBackend, TableClass, TableEndpoint, TableQueue
from zeta_operator.operator.weights import BackendInput, ControllerState, Reading, decide, static_weights
from zeta_operator.router import balancer, proxy
from zeta_operator.router import second_opinion as router_opinion
from zeta_operator.router.admission import ServiceTimes
from zeta_operator.router.balancer import Choice, ClassRoute, Eligible
from zeta_operator.router.classify import Classification
from zeta_operator.router.endpoints import EndpointTracker
from zeta_operator.router.occupancy import Occupancy
from zeta_operator.router.payload import parse_request
from zeta_operator.router.queue import QueueFull, Waiter, WaitQueue
from zeta_operator.router.settings import Ejection
from zeta_operator.router.snapshot import TableSnapshot, replica_share
from zeta_sim.scheduler import Scheduler, Sequence

from . import prompts as prompt_sets
from .prompts import Prompt
from .records import RequestRecord, RunResult
from .scenario import ClassShape, Scenario

STRATEGIES = ("static", "round-robin", "least-request", "zeta")

TABLE_PROPAGATION_S = 0.3
"""ConfigMap write to the router's watch seeing it."""
QUERY_OFFSET_S = 0.5
"""Operator cycles run this long after a scrape (cycles and scrapes are not aligned in life either)."""
RETRIES = 2
"""The router's default extra attempts before the first byte."""
UNCAPPED = 1_000_000
"""The static strategy's endpoint cap: no router-side limit, everything waits in the preferred engine."""
_MIN_TICK = 1e-6


@dataclass(eq=False)
class _Engine:
    backend: str
    url: str
    scheduler: Scheduler
    alive: bool = True
    ready: bool = True
    extra_s: float = 0.0
    version: int = 0
    news: list[_Request] = field(default_factory=list)
    inflight: dict[int, _Request] = field(default_factory=dict)
    """Requests on this engine by arrival number (a dict, not a set: iteration order must not depend on id())."""


@dataclass(eq=False)
class _Router:
    """One router replica: its own in-flight counts and ejections, queue and round-robin position."""

    tracker: EndpointTracker
    queue: WaitQueue[_Request]
    picker: Callable[[Eligible, frozenset[str]], Choice | None]
    occupancy: Occupancy | None = None
    """Zeta's view of the engines' own occupancy (`router.occupancy`), when the engines are read."""
    service: ServiceTimes = field(default_factory=ServiceTimes)
    """Its own answers' service times, which bound a wait under the queue's shedLate (`admission.wait_budget`)."""


@dataclass(eq=False)
class _Request:
    record: RequestRecord
    shape: ClassShape
    number: int
    prompt: Prompt
    router: _Router
    eligible: Eligible | None = None
    choice: Choice | None = None
    seq: Sequence | None = None
    tried: set[str] = field(default_factory=set)
    waiter: Waiter[_Request] | None = None
    cls: Classification | None = None
    opened: float = 0.0
    """When the current attempt went to its engine."""


def label_headers(prompt: Prompt) -> dict[str, str]:
    """The true labels as the sample policy's classifier headers (the --label-headers diagnostic only)."""
    return {"X-Zeta-Task": prompt.task, "X-Zeta-Complexity": str(prompt.complexity)}


def router_snapshot(table: RoutingTable) -> TableSnapshot:
    """The snapshot a router process builds from ``table``, with the classifier it would load: the shipped
    learned model where the router has one (``TableSnapshot.build(table, model=...)``), else the rules."""
    build: Any = TableSnapshot.build
    if "model" in inspect.signature(build).parameters:
        learned = importlib.import_module("zeta_operator.router.model")
        return build(table, model=learned.shipped())  # type: ignore[no-any-return,unused-ignore]
    return build(table)  # type: ignore[no-any-return,unused-ignore]


def router_eligible(route: ClassRoute, cls: Classification, table: RoutingTable) -> Eligible:
    """proxy._serve's capability filter for a classified request: with the router's confidence gating
    (``Forwarder._eligible``: never spill down on doubt) where the router has it, else the classified
    complexity alone."""
    gate = getattr(proxy.Forwarder, "_eligible", None)
    if gate is not None:
        settings = table.classifier
        confidences = [settings.offload_confidence, settings.task_confidence]
        if hasattr(settings, "offload_task_confidence"):  # an older checkout's router, side by side, has none
            confidences.append(settings.offload_task_confidence)
        return gate(route, cls, *confidences)  # type: ignore[no-any-return,unused-ignore]
    return route.eligible(complexity=cls.complexity, tokens=cls.tokens)


def router_classification(
    snapshot: TableSnapshot,
    prompt: Prompt,
    *,
    max_tokens: int,
    headers: dict[str, str] | None = None,
    second_opinion: bool = False,
) -> Classification:
    """What the router decides for this request body (proxy._serve: parse, then the table's classifier; no
    class headers unless given; with ``second_opinion``, the encoder's opinion folded in where the model is
    unsure, as `second_opinion.SecondOpinion.revise` does, never busy or late). The one seam to follow when the
    router's classification changes."""
    parsed = parse_request(prompt.raw(max_tokens=max_tokens), "chat")
    cls = snapshot.classifier.classify(headers or {}, parsed.model, parsed.prompt)
    if not second_opinion:
        return cls
    head, vectors = _second_opinion()
    if not router_opinion.unsure(cls, head.ask_below):
        return cls
    turn, instruction = (vectors(text) for text in router_opinion.texts_of(parsed.prompt))
    return router_opinion.fold_in(snapshot.classifier, cls, head, head.task_probabilities(turn, instruction))


@functools.cache
def _second_opinion() -> tuple[router_opinion.Head, Callable[[str], list[float]]]:
    """The shipped head, and the encoder's vector of a text: from the training cache (.cache/ceiling/) when it
    has the text, else read by the encoder (loaded on first need) and kept."""
    from zeta_dev.classifier import ceiling

    head = router_opinion.load_head()
    known = ceiling.cached_vectors()
    encoder: list[router_opinion.Encoder] = []

    def vector(text: str) -> list[float]:
        if text not in known:
            encoder[:] = encoder or [ceiling.encoder()]
            text = router_opinion.cut(encoder[0], text, head.max_tokens)
            if text not in known:
                known[text] = encoder[0].query([text])[0]
        return [float(v) for v in known[text]]

    return head, vector


class Simulation:
    def __init__(self, scenario: Scenario, strategy: str, *, seed: int = 0) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}")
        self.sc = scenario
        self.strategy = strategy
        self.now = 0.0
        self.rng = random.Random(f"des:{scenario.seed}:{strategy}:{seed}")
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self.routers = [self._router(i) for i in range(scenario.routers)]
        policy = scenario.policy
        self.queue_settings = TableQueue.of(policy.queue)
        self.engines: dict[str, _Engine] = {}
        self.by_backend: dict[str, list[_Engine]] = {}
        for name, group in scenario.backends().items():
            for i in range(group.endpoints):
                url = f"http://{name}-{i}.sim:8000"
                engine = _Engine(name, url, Scheduler(group.model, time_scale=1.0, stream_interval_s=1e9))
                self.engines[url] = engine
                self.by_backend.setdefault(name, []).append(engine)
        self.groups = scenario.backends()
        self.records: list[RequestRecord] = []
        self.weights: list[tuple[float, dict[str, dict[str, float]]]] = []
        self.violations = 0
        self.routing_violations = 0
        self.routes: dict[str, ClassRoute] = {}
        self.classified: dict[str, Classification] = {}
        # Zeta's operator state and the readings Prometheus holds.
        self.state: ControllerState | None = None
        self.scraped: dict[str, tuple[int, int, float]] = {}
        self.scraped_at = 0.0
        self.window = parse_duration(policy.prometheus.window)
        self.completions: deque[tuple[float, str, str, float, bool]] = deque()
        self.quantile = policy.prometheus.latency_quantile

    def _router(self, index: int) -> _Router:
        tracker = EndpointTracker(Ejection(), clock=lambda: self.now)
        rng = random.Random(f"des:{self.sc.seed}:{self.strategy}:{index}:{self.rng.random()}")
        picker: Callable[[Eligible, frozenset[str]], Choice | None]
        if self.strategy == "round-robin":
            rr = balancer.RoundRobin()
            picker = lambda e, x: rr(e, tracker, rng, x)  # noqa: E731
        elif self.strategy == "least-request":
            picker = lambda e, x: balancer.least_request(e, tracker, rng, x)  # noqa: E731
        elif self.strategy == "zeta" and self.sc.engine_poll > 0:  # the router's room: the engines' occupancy
            occupancy = Occupancy(
                tracker, replicas=self.sc.routers, max_age=3 * self.sc.engine_poll, clock=lambda: self.now
            )
            picker = lambda e, x: balancer.choose(e, occupancy, rng, exclude=x)  # noqa: E731
            return _Router(tracker, WaitQueue(), picker, occupancy)
        else:
            picker = lambda e, x: balancer.choose(e, tracker, rng, exclude=x)  # noqa: E731
        return _Router(tracker, WaitQueue(), picker)

    # -- the event loop -------------------------------------------------------------------------------------

    def at(self, t: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (t, next(self._counter), action))

    def run(self, *, drain: float = 60.0) -> RunResult:
        started = time.perf_counter()
        arrivals = self.sc.arrivals()
        chosen = prompt_sets.assign([(t, c.name) for t, c in arrivals], self.sc.prompts, seed=self.sc.seed)
        for (t, shape), prompt in zip(arrivals, chosen, strict=True):
            self.at(t, functools.partial(self._arrive, t, shape, prompt))
        self._schedule_faults()
        self._schedule_externals()
        initial = self._initial_table()
        self.snapshot = router_snapshot(initial)
        self._install(initial, record=self.strategy == "zeta")
        if self.strategy == "zeta":
            t = QUERY_OFFSET_S
            while t < self.sc.duration + drain:
                self.at(t, self._operator_cycle)
                t += self.sc.interval
        t = 0.0
        while t < self.sc.duration + drain:
            self.at(t, self._scrape)
            t += self.sc.scrape_interval
        for i, router in enumerate(self.routers):  # replica i of n reads (i + 0.5) / n of an interval in
            if router.occupancy is not None:
                t = self.sc.engine_poll * (i + 0.5) / len(self.routers)
                while t < self.sc.duration + drain:
                    self.at(t, functools.partial(self._poll_engines, router))
                    t += self.sc.engine_poll
        t = 1.0
        while t < self.sc.duration + drain:  # the router's slow timer also offers capacity to waiters
            self.at(t, self._offer_all)
            t += 1.0
        end = self.sc.duration + drain
        while self._events:
            t, _, action = heapq.heappop(self._events)
            if t > end:
                break
            self.now = t
            action()
        for r in self.records:
            if r.status == "error" and r.latency == 0.0 and not r.backend:
                r.latency = end - r.sent_at  # never answered within the drain
        result = RunResult(self.sc.name, self.strategy, "des", self.records, self.weights, self.violations)
        result.routing_violations = self.routing_violations
        result.wall_seconds = time.perf_counter() - started
        return result

    # -- tables ---------------------------------------------------------------------------------------------

    def _table(
        self, weights: dict[str, dict[str, float]], *, cap: int | None, ready_only: bool
    ) -> RoutingTable:
        policy = self.sc.policy
        backends = []
        for name, group in self.groups.items():
            engines = [e for e in self.by_backend[name] if e.ready or not ready_only]
            backends.append(
                TableBackend(
                    name=name, model=name, tasks=list(group.tasks), max_complexity=group.max_complexity,
                    context_window=32768, size_billions=group.size_b,
                    endpoints=[TableEndpoint(url=e.url, max_concurrency=cap or group.max_concurrency) for e in engines],
                )
            )  # fmt: skip
        classes = [
            TableClass(
                name=c.name, task_type=c.task_type, complexity=c.complexity, priority=c.priority,
                latency_objective_seconds=parse_duration(c.latency_objective), weights=weights.get(c.name, {}),
                preferred=list(c.preferred),  # as the operator's table has them: the router's spill floor uses them
            )
            for c in policy.classes
        ]  # fmt: skip
        return RoutingTable(
            policy="bench/des", queue=self.queue_settings, backends=backends, classes=classes,
            classifier=policy.classifier, default_class=policy.default_class,
        )  # fmt: skip

    def _initial_table(self) -> RoutingTable:
        policy = self.sc.policy
        if self.strategy == "static":
            weights = {c.name: {n: 1.0 / len(c.preferred) for n in c.preferred} for c in policy.classes}
            return self._table(weights, cap=UNCAPPED, ready_only=False)
        if self.strategy == "zeta":
            return self._table(static_weights(policy, self._inputs(signals=False)), cap=None, ready_only=True)
        return self._table({c.name: {} for c in policy.classes}, cap=None, ready_only=False)

    def _install(self, table: RoutingTable, *, record: bool) -> None:
        static = self.strategy == "static"
        self.routes = {}
        backends = table.backends
        if self.routers[0].occupancy is None:
            backends = replica_share(backends, self.sc.routers)  # as each router replica's snapshot does
        for c in table.classes:
            route = ClassRoute.build(c, backends)
            if static:  # preferred only: no unweighted last resort
                route = replace(route, unweighted=())
            self.routes[c.name] = route
        if record:
            self.weights.append((self.now, {c.name: dict(c.weights) for c in table.classes}))
        self._offer_all()

    # -- requests -------------------------------------------------------------------------------------------

    def _arrive(self, t: float, shape: ClassShape, prompt: Prompt) -> None:
        router = self.routers[self.rng.randrange(len(self.routers))]  # the Service picks a replica
        record = RequestRecord(sent_at=t, task_class=shape.name, complexity=prompt.complexity)
        record.task, record.prompt_id = prompt.task, prompt.id
        self.records.append(record)
        req = _Request(record, shape, len(self.records), prompt, router)
        cls = self.classified.get(prompt.id)
        if cls is None:  # the table's classifier settings never change during a run: classify a text once
            headers = label_headers(prompt) if self.sc.label_headers else None
            cls = router_classification(
                self.snapshot,
                prompt,
                max_tokens=shape.output_tokens,
                headers=headers,
                second_opinion=self.sc.second_opinion,
            )
            self.classified[prompt.id] = cls
        record.routed_class, req.cls = cls.task_class.name, cls
        req.eligible = router_eligible(self.routes[cls.task_class.name], cls, self.snapshot.table)
        record.allowed = frozenset(b.name for b in req.eligible.backends())
        if not req.eligible:
            self._finish(req, "rejected")
            return
        choice = router.picker(req.eligible, frozenset())
        if choice is not None:
            self._dispatch(req, choice)
            return
        budget = router.service.budget(
            self.queue_settings,
            cls.task_class.name,
            cls.task_class.latency_objective_seconds,
            (b.name for b in req.eligible.backends()),
        )
        if budget <= 0:  # Admission.acquire: too late to be answered in time after any wait
            self._finish(req, "rejected")
            return
        waiter = Waiter(cls.priority, cls.complexity, self.now, req.eligible.endpoint_urls(), req)
        try:
            router.queue.push(waiter, max_size=self.queue_settings.max_size)
        except QueueFull:
            self._finish(req, "rejected")
            return
        req.waiter = waiter
        self.at(self.now + budget, lambda: self._deadline(req))

    def _deadline(self, req: _Request) -> None:
        if req.waiter is not None and req.waiter.queued:
            req.router.queue.remove(req.waiter)
            self._finish(req, "rejected")

    def _dispatch(self, req: _Request, choice: Choice) -> None:
        url = choice.endpoint.url
        req.router.tracker.acquire(url)
        req.choice = choice
        req.opened = self.now
        req.tried.add(url)
        engine = self.engines[url]
        if not engine.alive:  # connection refused: fails at once, retried on another endpoint
            self._failed_attempt(req)
            return
        shape = req.shape
        req.seq = engine.scheduler.submit(
            prompt_tokens=req.prompt.tokens, output_tokens=shape.output_tokens, stream=False, now=self.now,
            extra_s=engine.extra_s, on_news=lambda: engine.news.append(req),
        )  # fmt: skip
        engine.inflight[req.number] = req
        self._wake(engine)

    def _failed_attempt(self, req: _Request) -> None:
        assert req.choice is not None and req.eligible is not None
        url = req.choice.endpoint.url
        req.router.tracker.record_failure(url, peers=req.eligible.endpoint_urls())
        self._release(req.router, url)
        self._observe(
            req.choice.backend.name, req.record.routed_class, self.now - req.record.sent_at, ok=False
        )
        req.choice, req.seq = None, None
        retry = None
        if req.record.retries < RETRIES:
            retry = req.router.picker(req.eligible, frozenset(req.tried))
        if retry is None:
            self._finish(req, "error")
            return
        req.record.retries += 1
        self._dispatch(req, retry)

    def _wake(self, engine: _Engine) -> None:
        engine.version += 1
        delay = engine.scheduler.next_event_in()
        if delay is not None:
            version = engine.version
            self.at(self.now + max(delay, _MIN_TICK), lambda: self._engine_event(engine, version))

    def _engine_event(self, engine: _Engine, version: int) -> None:
        if version != engine.version or not engine.alive:
            return
        engine.scheduler.advance(self.now)
        news, engine.news = engine.news, []
        for req in news:
            if req.seq is not None and req.seq.done and req.choice is not None:
                choice = req.choice
                engine.inflight.pop(req.number, None)
                req.router.tracker.record_success(choice.endpoint.url)
                self._finish(req, "ok", backend=choice.backend.name)
                self._observe(choice.backend.name, req.record.routed_class, req.record.latency, ok=True)
                req.router.service.observe(
                    req.record.routed_class, choice.backend.name, self.now - req.opened
                )
                req.choice = None
                self._release(req.router, choice.endpoint.url)
        self._wake(engine)

    def _finish(self, req: _Request, status: Any, *, backend: str = "") -> None:
        r = req.record
        r.status = status
        r.latency = self.now - r.sent_at
        r.backend = backend
        if backend:
            group = self.groups[backend]
            r.cost = group.cost
            r.quality = self.sc.answer_quality(backend, req.prompt.task, req.prompt.complexity)
            if req.prompt.task not in group.tasks or req.prompt.complexity > group.max_complexity:
                self.violations += 1  # a true capability violation: judged by the prompt's true labels
            cls = req.cls
            if cls is not None and (
                cls.task_type not in group.tasks or cls.complexity > group.max_complexity
            ):
                self.routing_violations += 1  # the router broke its own classification (must never happen)

    def _release(self, router: _Router, url: str) -> None:
        router.tracker.release(url)
        while router.queue:  # Admission._offer: the freed slot goes to the best waiter that may use it
            waiter = router.queue.best(
                now=self.now, aging_seconds=self.queue_settings.aging_seconds, endpoint=url
            )
            if waiter is None:
                return
            assert waiter.payload.eligible is not None
            choice = router.picker(waiter.payload.eligible, frozenset())
            if choice is None:
                return
            router.queue.remove(waiter)
            self._dispatch(waiter.payload, choice)

    def _poll_engines(self, router: _Router) -> None:
        assert router.occupancy is not None
        for url, e in self.engines.items():
            if e.alive:  # a dead one's read fails: its last reading stays until stale, as in the router
                e.scheduler.advance(self.now)
                router.occupancy.report(url, e.scheduler.num_running + e.scheduler.num_waiting)
        self._offer_all([router])

    def _offer_all(self, routers: list[_Router] | None = None) -> None:
        for router in self.routers if routers is None else routers:
            if not router.queue:
                continue
            for waiter in router.queue.in_order(
                now=self.now, aging_seconds=self.queue_settings.aging_seconds
            ):
                assert waiter.payload.eligible is not None
                choice = router.picker(waiter.payload.eligible, frozenset())
                if choice is not None:
                    router.queue.remove(waiter)
                    self._dispatch(waiter.payload, choice)

    # -- faults ---------------------------------------------------------------------------------------------

    def _schedule_faults(self) -> None:
        for f in self.sc.faults:
            engine = self.by_backend[f.backend][f.endpoint]
            if f.crash:
                self.at(f.start, functools.partial(self._crash, engine))
                self.at(f.start + f.notready_after, functools.partial(self._not_ready, engine))
            else:
                self.at(f.start, functools.partial(_set_extra, engine, f.extra_latency_ms / 1000))
                if math.isfinite(f.duration):
                    self.at(f.start + f.duration, functools.partial(_set_extra, engine, 0.0))

    def _schedule_externals(self) -> None:
        """Requests straight to a backend's endpoints (round robin, as a Service would spread them)."""
        for x in self.sc.externals:
            engines = self.by_backend[x.backend]
            for i, t in enumerate(x.arrivals(self.sc.seed)):
                self.at(
                    t,
                    functools.partial(
                        self._external, engines[i % len(engines)], x.prompt_tokens, x.output_tokens
                    ),
                )

    def _external(self, engine: _Engine, prompt_tokens: int, output_tokens: int) -> None:
        if not engine.alive:
            return
        engine.scheduler.submit(
            prompt_tokens=prompt_tokens, output_tokens=output_tokens, stream=False, now=self.now,
            extra_s=engine.extra_s,
        )  # fmt: skip
        self._wake(engine)

    def _crash(self, engine: _Engine) -> None:
        engine.scheduler.advance(self.now)
        engine.alive = False
        engine.version += 1
        for number, req in sorted(
            engine.inflight.items()
        ):  # dropped before the first byte: retried elsewhere
            del engine.inflight[number]
            self._failed_attempt(req)

    def _not_ready(self, engine: _Engine) -> None:
        engine.ready = False

    # -- Zeta's control loop --------------------------------------------------------------------------------

    def _scrape(self) -> None:
        snap = {}
        for url, e in self.engines.items():
            if e.alive:
                s = e.scheduler
                s.advance(self.now)
                snap[url] = (s.num_waiting, s.num_running, s.tokens_in_flight / (512 * s.model.max_seqs))
            # the engine's pending wake stays valid: advance only moved it to now
        self.scraped, self.scraped_at = snap, self.now

    def _observe(self, backend: str, task_class: str, latency: float, *, ok: bool) -> None:
        if self.strategy == "zeta":
            self.completions.append((self.now, backend, task_class, latency, ok))

    def _inputs(self, *, signals: bool) -> list[BackendInput]:
        at = self.scraped_at
        while self.completions and self.completions[0][0] < at - self.window:
            self.completions.popleft()
        lat: dict[tuple[str, str], list[float]] = {}
        total: dict[str, int] = {}
        failed: dict[str, int] = {}
        for t, b, c, seconds, ok in self.completions:
            if t > at:
                break
            total[b] = total.get(b, 0) + 1
            if ok:
                lat.setdefault((b, c), []).append(seconds)
            else:
                failed[b] = failed.get(b, 0) + 1
        inputs = []
        for name, group in self.groups.items():
            engines = self.by_backend[name]
            readings: dict[str, Reading] = {}
            latency: dict[str, Reading] = {}
            snaps = [self.scraped[e.url] for e in engines if e.url in self.scraped]
            if signals and snaps:
                readings["queueDepth"] = Reading(sum(s[0] for s in snaps) / len(snaps), "ok")
                readings["running"] = Reading(sum(s[1] for s in snaps) / len(snaps), "ok")
                readings["kvCache"] = Reading(min(1.0, max(s[2] for s in snaps)), "ok")
                if total.get(name):
                    readings["errorRate"] = Reading(failed.get(name, 0) / total[name], "ok")
                for task_class in self.sc.policy.classes:
                    values = lat.get((name, task_class.name))
                    if values:
                        latency[task_class.name] = Reading(_quantile(values, self.quantile), "ok")
            inputs.append(
                BackendInput(
                    name=name, tasks=frozenset(group.tasks), max_complexity=group.max_complexity,
                    size_billions=group.size_b, max_concurrency=group.max_concurrency,
                    ready_endpoints=sum(1 for e in engines if e.ready), newest_ready_since=None,
                    signals=readings, latency=latency, model=group.name,
                )
            )  # fmt: skip
        return inputs

    def _operator_cycle(self) -> None:
        decision = decide(
            policy=self.sc.policy, backends=self._inputs(signals=True), previous=self.state, now=self.now
        )
        self.state = decision.state
        if not any(decision.weights.values()):
            return  # the operator keeps the live table rather than writing an empty one
        table = self._table(decision.weights, cap=None, ready_only=True)
        self.at(self.now + TABLE_PROPAGATION_S, lambda: self._install(table, record=True))


def _set_extra(engine: _Engine, seconds: float) -> None:
    engine.extra_s = seconds


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def simulate(scenario: Scenario, strategy: str, *, seed: int = 0) -> RunResult:
    return Simulation(scenario, strategy, seed=seed).run()

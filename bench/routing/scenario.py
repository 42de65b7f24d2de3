"""Scenarios (bench/scenarios/*.yaml): the fleet, the task classes, the open-loop workload and its events.

A scenario file says what happens; this module turns it into exact numbers:

- **fleet**: backend groups (model size, engine batch size ``max_seqs``, endpoints per backend, capabilities,
  ``replicas`` backends per group for large fleets). Latency follows the simulator's model (`sim/latency.py`).
- **classes**: task classes with complexity, prompt and output tokens and the policy's routing intent
  (preferred, fallbacks, objective, priority) — by default the shipped sample policy's five classes.
- **load**: the steady arrival rate as a fraction of the fleet's capacity (found by the oracle's linear
  program for the class mix), or absolute ``rate`` in requests per second. Arrivals are Poisson per class.
- **bursts**: a class's rate multiplied by ``factor`` for a while (thinning keeps the process Poisson).
- **faults**: ``extra_latency_ms`` on one backend for a while (slow backend, a co-tenant), or ``crash`` of one
  backend.
- **external**: load on a backend that does not pass through the router (a batch job calling its Service
  directly): requests per second for a while, with their prompt and output tokens; they occupy the engine, are
  not scored, and only what the engines report (Prometheus) shows them.
- **routers**: router replicas (2 by default, as the chart deploys it); each has only its own in-flight counts
  and queue, and every client request goes to one of them at random (a Service spreads connections).
- **quality**: overrides of the answer-quality table (bench/routing/quality.py).
"""

from __future__ import annotations

import copy
import itertools
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from zeta_operator.api.common import parse_duration
from zeta_operator.api.policy import RoutingPolicySpec
from zeta_operator.router.settings import RouterSettings
from zeta_sim.latency import LatencyModel

from . import lp, quality

SCENARIO_DIR = Path(__file__).resolve().parents[1] / "scenarios"
REPO = Path(__file__).resolve().parents[2]
SAMPLE_POLICY = REPO / "manifests" / "samples" / "routingpolicy.yaml"


@dataclass(frozen=True)
class BackendGroup:
    """One kind of model server; ``replicas`` ModelBackends of it (named ``name`` or ``name-<i>``)."""

    name: str
    size_b: float
    max_seqs: int
    tasks: tuple[str, ...]
    max_complexity: int
    endpoints: int = 1
    replicas: int = 1
    headroom: int = 2
    """The router's per-endpoint cap is max_seqs + headroom (as in the demo): a little engine queue."""
    cost: float = 1.0
    """``ModelBackend.spec.cost`` (relative cost per request): the sample manifests' value by default."""

    def members(self) -> list[str]:
        return [self.name] if self.replicas == 1 else [f"{self.name}-{i}" for i in range(self.replicas)]

    @property
    def model(self) -> LatencyModel:
        return LatencyModel.for_size(self.size_b, max_seqs=self.max_seqs)

    @property
    def max_concurrency(self) -> int:
        return self.max_seqs + self.headroom


@dataclass(frozen=True)
class ClassShape:
    name: str
    task_type: str
    complexity: int
    prompt_tokens: int
    output_tokens: int
    share: float
    """Fraction of the steady arrivals."""


@dataclass(frozen=True)
class Burst:
    task_class: str
    start: float
    duration: float
    factor: float

    def active(self, t: float) -> bool:
        return self.start <= t < self.start + self.duration


@dataclass(frozen=True)
class Fault:
    backend: str
    start: float
    duration: float = math.inf
    extra_latency_ms: float = 0.0
    crash: bool = False
    endpoint: int = 0
    notready_after: float = 5.0
    """Crash only: seconds until the pod is reported NotReady (a kubelet's readiness probe failing)."""

    def active(self, t: float) -> bool:
        return self.start <= t < self.start + self.duration


@dataclass(frozen=True)
class External:
    """Requests sent straight to a backend's Service (spread over its endpoints), bypassing every router."""

    backend: str
    start: float
    duration: float
    rate: float
    prompt_tokens: int = 200
    output_tokens: int = 200

    def active(self, t: float) -> bool:
        return self.start <= t < self.start + self.duration

    def arrivals(self, seed: int) -> list[float]:
        rng = random.Random(f"external:{seed}:{self.backend}:{self.start}")
        times: list[float] = []
        t = self.start
        while True:
            t += rng.expovariate(self.rate)
            if t >= self.start + self.duration:
                return times
            times.append(t)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    duration: float
    seed: int
    groups: tuple[BackendGroup, ...]
    classes: tuple[ClassShape, ...]
    policy: RoutingPolicySpec
    rate: float
    """Steady requests per second, all classes together."""
    bursts: tuple[Burst, ...] = ()
    faults: tuple[Fault, ...] = ()
    load: float | None = None
    """The fraction of capacity the file asked for (None when it gave an absolute rate)."""
    capacity: float = 0.0
    """Fleet capacity in requests per second for the class mix (the oracle's linear program)."""
    scrape_interval: float = 1.0
    steady_after: float = 20.0
    """Seconds after which a burst-free scenario counts as steady (for the stability metric)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    externals: tuple[External, ...] = ()
    routers: int = 2
    """Router replicas, each with its own in-flight view and queue."""
    engine_poll: float = RouterSettings.engine_poll
    """How often Zeta's routers read the engines' own occupancy (``--engine-poll-interval``; 0: never, the
    routers' own counts only, as the baselines)."""
    quality: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=quality.table)
    """ModelBackend group -> task type -> tier -> answer quality (bench/routing/quality.py)."""
    prompts: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    """class -> held-out prompts of that true class (bench/routing/prompts.py); empty: not loaded yet."""
    label_headers: bool = False
    """Diagnostic only: requests also carry their true labels as the classifier's headers (task type and
    complexity), so the router's classification is always right: routing measured apart from the classifier."""
    second_opinion: bool = False
    """Every strategy's routers ask the encoder about the task type where the model is unsure: in real mode
    ``zeta-router --second-opinion encoder`` (LiteLLM's proxy has no classifier), in the DES as it does, never
    busy or late (des.router_classification)."""

    # -- shape ----------------------------------------------------------------------------------------------

    def backends(self) -> dict[str, BackendGroup]:
        """ModelBackend name -> its group."""
        return {m: g for g in self.groups for m in g.members()}

    def objective(self, task_class: str) -> float:
        return self._objectives[task_class]

    @property
    def _objectives(self) -> dict[str, float]:
        return {c.name: parse_duration(c.latency_objective) for c in self.policy.classes}

    @property
    def interval(self) -> float:
        return parse_duration(self.policy.adaptation.interval)

    def class_rate(self, task_class: str, t: float) -> float:
        shape = next(c for c in self.classes if c.name == task_class)
        factor = 1.0
        for b in self.bursts:
            if b.task_class == task_class and b.active(t):
                factor *= b.factor
        return self.rate * shape.share * factor

    def arrivals(self, seed: int | None = None) -> list[tuple[float, ClassShape]]:
        """Every request (time, class) in time order: Poisson per class, thinned for bursts."""
        rng = random.Random(self.seed if seed is None else seed)
        events: list[tuple[float, int, ClassShape]] = []
        for i, shape in enumerate(self.classes):
            peak = max(self.class_rate(shape.name, t) for t in self._breakpoints())
            if peak <= 0:
                continue
            t = 0.0
            while True:
                t += rng.expovariate(peak)
                if t >= self.duration:
                    break
                if rng.random() < self.class_rate(shape.name, t) / peak:
                    events.append((t, i, shape))
        events.sort(key=lambda e: (e[0], e[1]))
        return [(t, shape) for t, _, shape in events]

    def phases(self) -> Iterator[tuple[float, float]]:
        """(start, end) of the intervals in which rates and faults are constant."""
        points = sorted({p for p in self._breakpoints() if 0 <= p < self.duration} | {self.duration})
        yield from itertools.pairwise(points)

    def _breakpoints(self) -> list[float]:
        points = [0.0]
        for b in self.bursts:
            points += [b.start, b.start + b.duration]
        for f in self.faults:
            points += [f.start] + ([f.start + f.duration] if math.isfinite(f.duration) else [])
        for x in self.externals:
            points += [x.start, x.start + x.duration]
        return [p for p in points if p < self.duration]

    def describe(self) -> str:
        load = f"{self.load:.0%} of capacity, " if self.load is not None else ""
        return (
            f"{self.name}: {self.duration:.0f}s, {load}{self.rate:.1f} req/s steady (capacity "
            f"{self.capacity:.1f} req/s), {sum(g.replicas for g in self.groups)} backends / "
            f"{sum(g.replicas * g.endpoints for g in self.groups)} endpoints, {self.routers} router replicas"
        )

    def group_of(self, backend: str) -> BackendGroup:
        return self.backends()[backend]

    def answer_quality(self, backend: str, task: str, complexity: int) -> float:
        """Quality of ``backend`` answering a request of this true task type and complexity (0 if incapable)."""
        group = self.group_of(backend)
        if task not in group.tasks or complexity > group.max_complexity:
            return 0.0
        return quality.lookup(self.quality, group.name, task, complexity)


# -- the oracle ----------------------------------------------------------------------------------------------


def service_cost(
    group: BackendGroup, shape: ClassShape, objective: float, extra_s: float = 0.0
) -> float | None:
    """Endpoint-seconds one request of ``shape`` costs on ``group`` at the largest batch that still meets the
    objective (continuous batching: R running share the GPU, each slowed by slowdown(R)); None when even alone
    it misses the objective."""
    model = group.model
    work = model.prefill_work_s(shape.prompt_tokens) + max(shape.output_tokens - 1, 0) * model.tpot_s
    best: float | None = None
    for running in range(1, model.max_seqs + 1):
        e2e = extra_s + model.slowdown(running) * work
        if e2e > objective:
            break
        # R sequences in flight, each taking e2e: R / e2e requests per second per endpoint.
        best = e2e / running
    return best


def capable(group: BackendGroup, shape: ClassShape) -> bool:
    return shape.task_type in group.tasks and group.max_complexity >= shape.complexity


@dataclass(frozen=True)
class OracleSplit:
    goodput: float
    """Requests per second the fleet can complete within objective (fluid bound)."""
    served: dict[str, float]
    """class -> requests per second served within objective."""
    split: dict[str, dict[str, float]]
    """class -> backend -> requests per second."""


def oracle(
    scenario: Scenario,
    rates: Mapping[str, float],
    *,
    extra_latency: Mapping[str, float] | None = None,
    down: Mapping[str, int] | None = None,
    busy: Mapping[str, float] | None = None,
    weighted: bool = False,
    allowed: Mapping[str, tuple[str, frozenset[str]]] | None = None,
    by_priority: bool = False,
) -> OracleSplit:
    """The most requests per second served within objective, over any split that respects capability:
    ``max sum w[c,b] x[c,b]`` s.t. ``sum_b x[c,b] <= rate_c`` and ``sum_c x[c,b] * cost[c,b] <= endpoints_b``
    (less the endpoint-seconds per second ``busy`` with external load). ``w`` is 1, or with ``weighted`` the
    answer quality of the pair: then ``goodput`` is quality-weighted goodput.

    ``allowed``: when given, the keys of ``rates`` are demands, each mapped to (its requests' true class, the
    backends they may use); the bound then holds for any balancer that keeps to those sets (`given_router`).

    ``by_priority``: the classes' priorities are served in order, as the router's queue orders its waiters: the
    split serves as much of the highest priority as the fleet can, then as much of the next as is left, and so
    on (a lexicographic optimum; each level's weight exceeds what any trade could gain below it)."""
    backends = scenario.backends()
    shapes = {c.name: c for c in scenario.classes}
    demand = allowed or {c: (c, frozenset(backends)) for c in shapes}
    pairs: list[tuple[str, str, float]] = []
    for d, (c, may_use) in demand.items():
        shape = shapes[c]
        for b, group in backends.items():
            if b not in may_use or not capable(group, shape):
                continue
            cost = service_cost(group, shape, scenario.objective(c), (extra_latency or {}).get(b, 0.0))
            if cost is not None:
                pairs.append((d, b, cost))

    def quality(d: str, b: str) -> float:
        true = shapes[demand[d][0]]
        return scenario.answer_quality(b, true.task_type, true.complexity)

    weight = {(d, b): quality(d, b) if weighted else 1.0 for d, b, _ in pairs}
    names_d, names_b = list(demand), list(backends)
    a: list[list[float]] = []
    rhs: list[float] = []
    for d in names_d:
        a.append([1.0 if pd == d else 0.0 for pd, _, _ in pairs])
        rhs.append(max(0.0, rates.get(d, 0.0)))
    for b in names_b:
        a.append([cost if pb == b else 0.0 for _, pb, cost in pairs])
        rhs.append(max(0.0, backends[b].endpoints - (down or {}).get(b, 0) - (busy or {}).get(b, 0.0)))
    objective = [weight[(d, b)] for d, b, _ in pairs]
    solved = objective
    if by_priority and pairs:
        solved = _priority_weights(
            scenario, [demand[d][0] for d, _, _ in pairs], objective, [c for *_, c in pairs]
        )
    _, x = lp.maximize(solved, a, rhs) if pairs else (0.0, [])
    value = sum(w * v for w, v in zip(objective, x, strict=True))
    served = {d: sum(v for (pd, _, _), v in zip(pairs, x, strict=True) if pd == d) for d in names_d}
    split: dict[str, dict[str, float]] = {d: {} for d in names_d}
    for (d, b, _), v in zip(pairs, x, strict=True):
        if v > 1e-9:
            split[d][b] = v
    return OracleSplit(value, served, split)


def _priority_weights(
    scenario: Scenario, classes: Sequence[str], weights: Sequence[float], costs: Sequence[float]
) -> list[float]:
    """Each pair's weight scaled by base ** (its class's rank among the priorities): one unit of a level given
    up frees capacity for at most max(cost) / min(cost) units of any lower one, each worth at most 1 against at
    least min(weight) lost, so a base above twice that ratio (plus the geometric sum of the lower levels) makes
    the weighted optimum the lexicographic one."""
    priority = {c.name: c.priority for c in scenario.policy.classes}
    levels = sorted({priority[c] for c in classes})
    positive = [w for w in weights if w > 0] or [1.0]
    base = 2 * max(costs) / min(costs) / min(positive) + 2
    return [w * base ** levels.index(priority[c]) for c, w in zip(classes, weights, strict=True)]


def fleet_capacity(scenario: Scenario) -> float:
    """The largest total rate with the scenario's class mix that the fleet serves entirely within objective."""
    lo, hi = 0.0, 1.0
    total = sum(c.share for c in scenario.classes)

    def fits(rate: float) -> bool:
        rates = {c.name: rate * c.share / total for c in scenario.classes}
        return oracle(scenario, rates).goodput >= rate * (1 - 1e-6)

    while fits(hi):
        lo, hi = hi, hi * 2
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def external_busy(scenario: Scenario, t: float) -> dict[str, float]:
    """Endpoint-seconds per second the external load active at ``t`` takes from each backend, at the engine's
    most efficient (full) batch: the least it can take, so the oracle stays an upper bound."""
    busy: dict[str, float] = {}
    for x in scenario.externals:
        if x.active(t):
            model = scenario.group_of(x.backend).model
            work = model.prefill_work_s(x.prompt_tokens) + max(x.output_tokens - 1, 0) * model.tpot_s
            per_request = work * model.slowdown(model.max_seqs) / model.max_seqs
            busy[x.backend] = busy.get(x.backend, 0.0) + x.rate * per_request
    return busy


def oracle_goodput(
    scenario: Scenario,
    arrivals: Sequence[tuple[float, str]] | None = None,
    *,
    weighted: bool = False,
    allowed: Sequence[frozenset[str]] | None = None,
    by_priority: bool = False,
) -> tuple[float, dict[str, float]]:
    """Time-averaged oracle goodput over the scenario's phases (requests/s; with ``weighted`` quality-weighted),
    and per class.

    With ``arrivals`` (time, class) the rates of each phase are the ones that actually arrived (the bound then
    shares the run's sampling noise); otherwise the scenario's expected rates. ``allowed``, beside
    ``arrivals``: the backends each arrival may use (`given_router`)."""
    total = 0.0
    per_class = {c.name: 0.0 for c in scenario.classes}
    for start, end in scenario.phases():
        mid = (start + end) / 2
        rates = {c.name: scenario.class_rate(c.name, mid) for c in scenario.classes}
        demand: dict[str, tuple[str, frozenset[str]]] | None = None
        if arrivals is not None and allowed is not None:
            rates, demand = _demands(arrivals, allowed, start, end)
        elif arrivals is not None:
            rates = {
                c: sum(1 for t, k in arrivals if k == c and start <= t < end) / (end - start) for c in rates
            }
        extra = {
            f.backend: f.extra_latency_ms / 1000 for f in scenario.faults if not f.crash and f.active(mid)
        }
        down: dict[str, int] = {}
        for f in scenario.faults:
            if f.crash and mid >= f.start:
                down[f.backend] = down.get(f.backend, 0) + 1
        split = oracle(
            scenario,
            rates,
            extra_latency=extra,
            down=down,
            busy=external_busy(scenario, mid),
            weighted=weighted,
            allowed=demand,
            by_priority=by_priority,
        )
        total += split.goodput * (end - start)
        for d, v in split.served.items():
            per_class[demand[d][0] if demand else d] += v * (end - start)
    return total / scenario.duration, {c: v / scenario.duration for c, v in per_class.items()}


def given_router(
    scenario: Scenario,
    arrivals: Sequence[tuple[float, str]],
    allowed: Sequence[frozenset[str]],
    *,
    by_priority: bool = False,
) -> float:
    """The quality-weighted oracle bound for a balancer that may send each request only where the router's
    classifier and spill gate allowed it (``allowed``, beside ``arrivals``): what perfect balancing gets with
    this classifier, against the plain bound's perfect knowledge of every request's class."""
    return oracle_goodput(scenario, arrivals, weighted=True, allowed=allowed, by_priority=by_priority)[0]


def _demands(
    arrivals: Sequence[tuple[float, str]], allowed: Sequence[frozenset[str]], start: float, end: float
) -> tuple[dict[str, float], dict[str, tuple[str, frozenset[str]]]]:
    """The phase's arrival rates per (true class, allowed backends), each under a key of its own."""
    counts: dict[tuple[str, frozenset[str]], int] = {}
    for (t, c), may_use in zip(arrivals, allowed, strict=True):
        if start <= t < end:
            counts[(c, may_use)] = counts.get((c, may_use), 0) + 1
    keys = {f"{c}:{','.join(sorted(may_use))}": (c, may_use) for c, may_use in counts}
    rates = {k: counts[v] / (end - start) for k, v in keys.items()}
    return rates, keys


# -- loading -------------------------------------------------------------------------------------------------

SAMPLE_COSTS = {"general-4b": 1.0, "coder-7b": 2.0, "large-14b": 4.0}
"""``spec.cost`` of the sample ModelBackends (manifests/samples)."""

DEFAULT_FLEET = (
    {"name": "general-4b", "size_b": 4, "max_seqs": 16, "tasks": ["chat", "summarize", "code"], "max_complexity": 2},
    {"name": "coder-7b", "size_b": 7, "max_seqs": 6, "tasks": ["code", "chat"], "max_complexity": 4},
    {"name": "large-14b", "size_b": 14, "max_seqs": 6, "tasks": ["chat", "code", "summarize", "reasoning"],
     "max_complexity": 5},
)  # fmt: skip
"""The demo's fleet (zeta_dev.demo): the sample ModelBackends on simulated engines."""

DEFAULT_CLASSES = {  # prompt/output tokens as the demo's workload sends them
    "chat-simple": {"complexity": 1, "prompt_tokens": 12, "output_tokens": 60, "share": 0.40},
    "summarize": {"complexity": 2, "prompt_tokens": 150, "output_tokens": 80, "share": 0.12},
    "code-simple": {"complexity": 2, "prompt_tokens": 20, "output_tokens": 120, "share": 0.30},
    "code-complex": {"complexity": 4, "prompt_tokens": 30, "output_tokens": 200, "share": 0.10},
    "reasoning": {"complexity": 5, "prompt_tokens": 15, "output_tokens": 200, "share": 0.08},
}

DEFAULT_ADAPTATION = {
    "interval": "2s",
    "staleAfter": "30s",
    "smoothing": 0.6,
    "maxStep": 0.25,
    "blackout": "2s",
}
"""The demo's adaptation (fast enough to see in a short run); a scenario may override any key."""


def policy_for(groups: Sequence[BackendGroup], overrides: Mapping[str, Any]) -> RoutingPolicySpec:
    """The sample RoutingPolicy, its class lists expanded to every replica of a group, with the demo's tuning."""
    doc = copy.deepcopy(yaml.safe_load(SAMPLE_POLICY.read_text())["spec"])
    members = {g.name: g.members() for g in groups}
    for c in doc["classes"]:
        for key in ("preferred", "fallbacks"):
            if key in c:
                c[key] = [m for n in c[key] for m in members.get(n, [n])]
    doc["backends"] = {"selector": {"matchLabels": {"zeta.dev/fleet": "bench"}}}
    doc["prometheus"] = {"address": "http://127.0.0.1:9090", "timeout": "1s", "window": "10s"}
    doc["adaptation"] = {**DEFAULT_ADAPTATION, **overrides.get("adaptation", {})}
    doc["thresholds"] = {"queueDepth": 2, **overrides.get("thresholds", {})}
    if "offload" in overrides:
        doc["offload"] = {**doc["offload"], **overrides["offload"]}
    return RoutingPolicySpec.model_validate(doc)


def load(name_or_path: str | Path) -> Scenario:
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return build(doc, default_name=path.stem)


def build(doc: Mapping[str, Any], *, default_name: str = "scenario") -> Scenario:
    groups = tuple(
        BackendGroup(
            name=g["name"], size_b=float(g["size_b"]), max_seqs=int(g["max_seqs"]), tasks=tuple(g["tasks"]),
            max_complexity=int(g["max_complexity"]), endpoints=int(g.get("endpoints", 1)),
            replicas=int(g.get("replicas", 1)), headroom=int(g.get("headroom", 2)),
            cost=float(g.get("cost", SAMPLE_COSTS.get(g["name"], 1.0))),
        )
        for g in doc.get("fleet", DEFAULT_FLEET)
    )  # fmt: skip
    policy = policy_for(groups, doc.get("policy", {}))
    shapes_doc = {n: {**v, **doc.get("classes", {}).get(n, {})} for n, v in DEFAULT_CLASSES.items()}
    task_types = {c.name: c.task_type for c in policy.classes}
    classes = tuple(
        ClassShape(name=n, task_type=task_types[n], complexity=int(v["complexity"]),
                   prompt_tokens=int(v["prompt_tokens"]), output_tokens=int(v["output_tokens"]),
                   share=float(v["share"]))
        for n, v in shapes_doc.items()
    )  # fmt: skip
    total_share = sum(c.share for c in classes)
    classes = tuple(
        ClassShape(c.name, c.task_type, c.complexity, c.prompt_tokens, c.output_tokens, c.share / total_share)
        for c in classes
    )
    bursts = tuple(
        Burst(task_class=b["class"], start=float(b["start"]), duration=float(b["duration"]), factor=float(b["factor"]))
        for b in doc.get("bursts", [])
    )  # fmt: skip
    faults = tuple(
        Fault(backend=f["backend"], start=float(f["start"]), duration=float(f.get("duration", math.inf)),
              extra_latency_ms=float(f.get("extra_latency_ms", 0.0)), crash=bool(f.get("crash", False)),
              endpoint=int(f.get("endpoint", 0)), notready_after=float(f.get("notready_after", 5.0)))
        for f in doc.get("faults", [])
    )  # fmt: skip
    externals = tuple(
        External(backend=x["backend"], start=float(x["start"]), duration=float(x["duration"]), rate=float(x["rate"]),
                 prompt_tokens=int(x.get("prompt_tokens", 200)), output_tokens=int(x.get("output_tokens", 200)))
        for x in doc.get("external", [])
    )  # fmt: skip
    scenario = Scenario(
        name=str(doc.get("name", default_name)),
        description=str(doc.get("description", "")).strip(),
        duration=float(doc["duration"]),
        seed=int(doc.get("seed", 1)),
        groups=groups,
        classes=classes,
        policy=policy,
        rate=0.0,
        bursts=bursts,
        faults=faults,
        steady_after=float(doc.get("steady_after", 20.0)),
        extra=dict(doc.get("extra", {})),
        externals=externals,
        routers=int(doc.get("routers", 2)),
        quality=quality.table(doc.get("quality")),
    )
    capacity = fleet_capacity(scenario)
    if "rate" in doc:
        rate, load_factor = float(doc["rate"]), None
    else:
        load_factor = float(doc["load"])
        rate = load_factor * capacity
    return Scenario(**{**scenario.__dict__, "rate": rate, "load": load_factor, "capacity": capacity})


def shrink(scenario: Scenario, *, duration: float) -> Scenario:
    """The same story compressed into ``duration`` seconds (for --smoke): every time scales alike."""
    k = duration / scenario.duration
    return Scenario(
        **{
            **scenario.__dict__,
            "duration": duration,
            "steady_after": scenario.steady_after * k,
            "bursts": tuple(
                Burst(b.task_class, b.start * k, b.duration * k, b.factor) for b in scenario.bursts
            ),
            "externals": tuple(
                External(x.backend, x.start * k, x.duration * k, x.rate, x.prompt_tokens, x.output_tokens)
                for x in scenario.externals
            ),
            "faults": tuple(
                Fault(
                    f.backend,
                    f.start * k,
                    f.duration * k,
                    f.extra_latency_ms,
                    f.crash,
                    f.endpoint,
                    f.notready_after,
                )
                for f in scenario.faults
            ),
        }
    )


def with_prompts(scenario: Scenario, by_class: Mapping[str, Sequence[Any]]) -> Scenario:
    """The scenario sending these held-out prompts: each class's prompt size becomes its pool's mean (what the
    oracle and the capacity are computed with), and the load keeps its fraction of the new capacity."""
    classes = tuple(
        ClassShape(
            c.name, c.task_type, c.complexity,
            round(sum(p.tokens for p in by_class[c.name]) / len(by_class[c.name])), c.output_tokens, c.share,
        )
        for c in scenario.classes
    )  # fmt: skip
    shaped = Scenario(
        **{**scenario.__dict__, "classes": classes, "prompts": {k: tuple(v) for k, v in by_class.items()}}
    )
    capacity = fleet_capacity(shaped)
    rate = scenario.rate if scenario.load is None else scenario.load * capacity
    return Scenario(**{**shaped.__dict__, "capacity": capacity, "rate": rate})


def names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))


def with_classifier(
    scenario: Scenario,
    *,
    task_confidence: float | None = None,
    offload_confidence: float | None = None,
    offload_task_confidence: float | None = None,
) -> Scenario:
    """The same scenario, its policy's ``spec.classifier.taskConfidence``, ``offloadConfidence`` and
    ``offloadTaskConfidence`` set to those given (None: as the scenario has it). Validated as the API validates
    them (fractions 0-1)."""
    given = {
        "task_confidence": task_confidence,
        "offload_confidence": offload_confidence,
        "offload_task_confidence": offload_task_confidence,
    }
    settings = scenario.policy.classifier.model_dump()
    settings.update({k: v for k, v in given.items() if v is not None})
    classifier = type(scenario.policy.classifier).model_validate(settings)
    policy = scenario.policy.model_copy(update={"classifier": classifier})
    return Scenario(**{**scenario.__dict__, "policy": policy})

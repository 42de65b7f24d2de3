"""Workloads nobody tuned on: ``python -m bench.bench_routing --unseen 200``.

Every default the router and the operator ship (offloadConfidence, offloadTaskConfidence, shedLate, the
adaptation gains, the balancer's two draws) was chosen, or checked, on the seven scenarios of bench/scenarios.
Users will run other traffic. This module draws workloads from a wide family, one per seed, as scenario
documents (the YAML of bench/scenarios, built by `scenario.build`): the demo's fleet and sample policy, a random
load and class mix, bursts of random classes, and the incidents the control plane exists for (load that bypasses
the routers, a slowed backend, a lost one) on random backends at random times. The family was written down
before any of its workloads was run, and nothing is chosen on it: it is only read.

What a seed draws (uniform unless said):

- duration 100-180 s (whole tens), load 0.3-0.9 of the fleet's capacity for the class mix;
- the class mix: each class's share in the sample workload times e^u, u in [-1, 1], renormalised;
- 0, 1 or 2 bursts (probabilities 0.3, 0.45, 0.25), each of a random class, x2-x6, for 20-70 s;
- each incident independently: external load (probability 0.35) on a random backend, 0.2-1.0 requests a
  second of 500-2,000 prompt and 100-500 output tokens, for 30-90 s; a slowed backend (0.35), 1-5 s more
  before each first token, for 30-90 s; a crash (0.15) of a random backend, for good, from 30 s on; every
  window starts at 15 s or later, lasts at most the duration less 30 s and ends before the workload does;
- 2, 3 or 4 router replicas (probabilities 0.6, 0.2, 0.2).
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import scenario
from .metrics import Summary

FIRST_SEED = 20_261_207
"""Where ``--unseen`` starts unless told (``--unseen-from``): the date this module was written, fixed before any
workload was run."""


def draw(seed: int) -> dict[str, Any]:
    """The scenario document of workload ``seed`` (see the module)."""
    rng = random.Random(f"unseen:{seed}")
    duration = 10.0 * rng.randint(10, 18)
    backends = [g["name"] for g in scenario.DEFAULT_FLEET]
    classes = list(scenario.DEFAULT_CLASSES)
    doc: dict[str, Any] = {
        "name": f"unseen-{seed}",
        "duration": duration,
        "seed": seed,
        "load": round(rng.uniform(0.3, 0.9), 2),
        "routers": rng.choices([2, 3, 4], weights=[0.6, 0.2, 0.2])[0],
        "classes": {
            c: {"share": round(v["share"] * math.exp(rng.uniform(-1.0, 1.0)), 4)}
            for c, v in scenario.DEFAULT_CLASSES.items()
        },
        "bursts": [],
        "external": [],
        "faults": [],
    }
    # Each window is drawn before the fields after it, in this order: a seed's workload depends on it.
    for _ in range(rng.choices([0, 1, 2], weights=[0.3, 0.45, 0.25])[0]):
        burst = _window(rng, duration, 20, 70)
        burst |= {"class": rng.choice(classes), "factor": round(rng.uniform(2.0, 6.0), 1)}
        doc["bursts"].append(burst)
    if rng.random() < 0.35:
        batch = _window(rng, duration, 30, 90)
        batch |= {"backend": rng.choice(backends), "rate": round(rng.uniform(0.2, 1.0), 2)}
        batch |= {"prompt_tokens": rng.randint(500, 2000), "output_tokens": rng.randint(100, 500)}
        doc["external"].append(batch)
    if rng.random() < 0.35:
        slowed = _window(rng, duration, 30, 90)
        slowed |= {"backend": rng.choice(backends), "extra_latency_ms": float(rng.randint(1000, 5000))}
        doc["faults"].append(slowed)
    if rng.random() < 0.15:
        lost = {"backend": rng.choice(backends), "start": float(rng.randint(30, int(duration) - 20))}
        doc["faults"].append(lost | {"crash": True})
    doc["description"] = describe(doc)
    return doc


def _window(rng: random.Random, duration: float, shortest: int, longest: int) -> dict[str, Any]:
    """A start and a duration (``shortest``-``longest`` s, no more than the workload's ``duration`` - 30 s)
    such that it starts at 15 s or later and ends before the workload does."""
    length = rng.randint(shortest, min(longest, int(duration) - 30))
    return {"start": float(rng.randint(15, int(duration) - length)), "duration": float(length)}


def describe(doc: dict[str, Any]) -> str:
    """One line: what happens in the workload."""
    parts = [f"load {doc['load']:.2f}", f"{doc['routers']} routers"]
    parts += [
        f"{b['class']} x{b['factor']:g} {b['start']:.0f}-{b['start'] + b['duration']:.0f}s"
        for b in doc["bursts"]
    ]
    parts += [
        f"{x['rate']:g}/s direct to {x['backend']} {x['start']:.0f}-{x['start'] + x['duration']:.0f}s"
        for x in doc["external"]
    ]
    for f in doc["faults"]:
        if f.get("crash"):
            parts.append(f"{f['backend']} lost at {f['start']:.0f}s")
        else:
            end = f["start"] + f["duration"]
            parts.append(f"{f['backend']} +{f['extra_latency_ms'] / 1000:g}s {f['start']:.0f}-{end:.0f}s")
    return ", ".join(parts)


KINDS = ("nothing", "burst", "load past the routers", "slowed backend", "backend lost")


def kinds(sc: scenario.Scenario) -> frozenset[str]:
    """The kinds of event in ``sc`` (`KINDS`)."""
    found = {"burst"} if sc.bursts else set()
    found |= {"load past the routers"} if sc.externals else set()
    found |= {"backend lost" if f.crash else "slowed backend" for f in sc.faults}
    return frozenset(found or {"nothing"})


@dataclass(frozen=True)
class Row:
    """One workload's result: every strategy's summary and the quality bounds."""

    name: str
    description: str
    kinds: frozenset[str]
    """What happens in it (`kinds`)."""
    requests: int
    summaries: Mapping[str, Summary]
    oracle: float
    """The LP bound on quality-weighted goodput (true classes)."""
    given_router_in_order: float
    """The LP bound given Zeta's routing decisions, the priorities served in order (NaN without a Zeta run)."""

    def against(self, base: str, field: str = "quality_goodput") -> float:
        """Zeta's ``field`` over ``base``'s (NaN when either is missing or the base is 0)."""
        zeta, other = self.summaries.get("zeta"), self.summaries.get(base)
        if zeta is None or other is None or not getattr(other, field):
            return math.nan
        return float(getattr(zeta, field) / getattr(other, field))

    def line(self) -> str:
        zeta = self.summaries.get("zeta")
        lr = self.summaries.get("least-request")
        bound = self.given_router_in_order / lr.quality_goodput if lr and lr.quality_goodput else math.nan
        violations = f"{zeta.violations if zeta else '—'} ({lr.violations if lr else '—'})"
        share = zeta.quality_goodput / self.oracle if zeta and self.oracle else math.nan
        return (
            f"| {self.name} | {self.description} | {self.requests} "
            f"| {zeta.quality_goodput if zeta else math.nan:.2f} ({share:.0%}) "
            f"| {self.against('static'):.2f} | {self.against('least-request'):.2f} "
            f"| {self.against('least-request', 'cost_per_good'):.2f} | {violations} | {bound:.2f} |"
        )


HEADER = (
    "| workload | what happens | requests | Zeta quality goodput (of the oracle) | vs static | vs least-request "
    "| cost / good answer vs least-request | true violations, Zeta (least-request) "
    "| bound given the router, in order, vs least-request |\n|---|---|---|---|---|---|---|---|---|"
)


def _ratios(rows: Sequence[Row], base: str, field: str = "quality_goodput") -> list[float]:
    """`Row.against` for each row, the workloads where it is undefined left out."""
    return [x for x in (r.against(base, field) for r in rows) if not math.isnan(x)]


def _median(values: Sequence[float]) -> str:
    return f"{statistics.median(values):.3f}" if values else "—"


def table(rows: Sequence[Row]) -> str:
    """Every workload's row, then how Zeta did against least-request across them."""
    lines = [f"### {len(rows)} workloads nobody tuned on (bench/routing/unseen.py)", "", HEADER]
    lines += [r.line() for r in rows]
    lines += [
        "",
        "Zeta against least-request by what happens (a workload counts under each of its events):",
        "",
    ]
    lines += [
        "| events | workloads | quality goodput: median (min-max) | at least level | cost / good answer: median |",
        "|---|---|---|---|---|",
    ]
    for kind in KINDS:
        some = [r for r in rows if kind in r.kinds]
        vs, cheaper = _ratios(some, "least-request"), _ratios(some, "least-request", "cost_per_good")
        if vs:
            lines.append(
                f"| {kind} | {len(vs)} | {statistics.median(vs):.3f} ({min(vs):.2f}-{max(vs):.2f}) "
                f"| {sum(x >= 1.0 for x in vs)} | {_median(cheaper)} |"
            )
    vs_lr = _ratios(rows, "least-request")
    cost = _ratios(rows, "least-request", "cost_per_good")
    vs_static = _ratios(rows, "static")
    if vs_lr:
        lines += [
            "",
            f"Zeta against least-request, quality goodput: median {statistics.median(vs_lr):.3f}, "
            f"{min(vs_lr):.2f}-{max(vs_lr):.2f}; at least level in {sum(x >= 1.0 for x in vs_lr)} of "
            f"{len(vs_lr)} workloads, within 2% below in {sum(0.98 <= x < 1.0 for x in vs_lr)}, more than 2% "
            f"below in {sum(x < 0.98 for x in vs_lr)}.",
        ]
    if cost:
        lines.append(
            f"Cost per good answer against least-request: median {statistics.median(cost):.3f}; lower in "
            f"{sum(x < 1.0 for x in cost)} of {len(cost)}."
        )
    if vs_static:
        lines.append(
            f"Against static: median {statistics.median(vs_static):.3f}, {min(vs_static):.2f}-{max(vs_static):.2f}."
        )
    totals = {
        s: sum(r.summaries[s].violations for r in rows if s in r.summaries)
        for s in ("zeta", "least-request", "static")
    }
    lines.append(
        "True capability violations summed over the workloads: "
        + ", ".join(f"{s} {n}" for s, n in totals.items() if any(s in r.summaries for r in rows))
        + "."
    )
    return "\n".join(lines)

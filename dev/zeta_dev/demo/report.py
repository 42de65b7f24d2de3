"""The demo's summary (numbers a person can check) and its plot (weights and latency over time)."""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .scenario import Phases
from .workload import Outcome


@dataclass
class Sample:
    """One look at the live system (taken by the view every second or two)."""

    t: float
    weights: dict[str, dict[str, float]]  # class -> backend -> share
    loads: dict[str, float | None]  # backend -> load
    table_version: int


@dataclass
class Timeline:
    samples: list[Sample] = field(default_factory=list)


def _quantile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summarize(outcomes: Sequence[Outcome], timeline: Timeline, objectives: dict[str, float], *,
              burst_class: str, preferred: str, phases: Phases) -> dict[str, Any]:  # fmt: skip
    by_class: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_class[o.task_class].append(o)
    classes = {}
    for name, items in sorted(by_class.items()):
        ok = [o for o in items if o.status == 200]
        latencies = [o.latency for o in ok]
        objective = objectives.get(name, float("inf"))
        classes[name] = {
            "requests": len(items),
            "ok": len(ok),
            "p50": round(statistics.median(latencies), 3) if latencies else None,
            "p95": round(_quantile(latencies, 0.95), 3) if latencies else None,
            "slo_attainment": round(sum(1 for o in ok if o.latency <= objective) / len(items), 3),
            "backends": dict(Counter(o.backend for o in ok)),
        }
    burst = [o for o in outcomes if o.task_class == burst_class]

    def offloaded(phase: str, *, since: float = 0.0) -> float:
        items = [o for o in burst if o.phase == phase and o.status == 200 and o.sent_at >= since]
        return round(sum(1 for o in items if o.backend != preferred) / len(items), 3) if items else 0.0

    reacted = phases.offload_seen
    shares_by_phase = {p: offloaded(p) for p in ("before", "burst", "after")}
    # the burst once the operator had reacted (how soon it reacts depends on the machine; what it does, not)
    shares_by_phase["offloading"] = offloaded("burst", since=reacted) if reacted is not None else 0.0

    shares = [
        (s.t, w) for s in timeline.samples if (w := s.weights.get(burst_class, {}).get(preferred)) is not None
    ]
    return {
        "requests": len(outcomes),
        "ok": sum(1 for o in outcomes if o.status == 200),
        "rejected": sum(1 for o in outcomes if o.status in (429, 503)),
        "decisions": dict(Counter(o.decision for o in outcomes)),
        "classes": classes,
        "burst_class": burst_class,
        "offloaded_share": shares_by_phase,
        "reaction_seconds": (
            round(reacted - phases.burst_started, 1)
            if reacted is not None and phases.burst_started is not None
            else None
        ),
        "preferred_weight": {
            "min": round(min(w for _, w in shares), 3) if shares else None,
            "final": round(shares[-1][1], 3) if shares else None,
        },
        "table_versions": len({s.table_version for s in timeline.samples}),
    }


def print_summary(summary: dict[str, Any]) -> None:
    print("\n=== summary ===")
    print(f"requests {summary['requests']}  ok {summary['ok']}  rejected {summary['rejected']}  "
          f"decisions {summary['decisions']}")  # fmt: skip
    print(f"{'class':<14}{'requests':>9}{'p50 s':>8}{'p95 s':>8}{'SLO':>7}  backends")
    for name, c in summary["classes"].items():
        print(f"{name:<14}{c['requests']:>9}{c['p50'] or 0:>8.2f}{c['p95'] or 0:>8.2f}{c['slo_attainment']:>7.0%}  "
              f"{c['backends']}")  # fmt: skip
    off = summary["offloaded_share"]
    print(f"{summary['burst_class']} served away from its preferred backend: before {off['before']:.0%}, "
          f"during the burst {off['burst']:.0%} (once offloading {off['offloading']:.0%}, the operator reacted "
          f"after {summary['reaction_seconds']} s), after {off['after']:.0%}")  # fmt: skip
    pw = summary["preferred_weight"]
    print(
        f"preferred backend's weight for {summary['burst_class']}: lowest {pw['min']}, at the end {pw['final']}"
    )


def write(out: Path, summary: dict[str, Any], timeline: Timeline, outcomes: Sequence[Outcome]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "summary.json"]
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    png = plot(out / "zeta-demo.png", timeline, outcomes, summary["burst_class"])
    if png:
        written.append(png)
    return written


def plot(path: Path, timeline: Timeline, outcomes: Sequence[Outcome], burst_class: str) -> Path | None:
    """Weights of the burst class and latency per class over time; needs matplotlib (the `demo` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; pip install 'zeta-operator[demo]')")
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    backends = sorted({b for s in timeline.samples for b in s.weights.get(burst_class, {})})
    for b in backends:
        top.plot([s.t for s in timeline.samples], [s.weights.get(burst_class, {}).get(b, 0) for s in timeline.samples],
                 label=b)  # fmt: skip
    top.set_ylabel(f"weight of {burst_class}")
    top.set_ylim(0, 1.05)
    top.legend(loc="right")
    for name in sorted({o.task_class for o in outcomes}):
        points = sorted((o.sent_at, o.latency) for o in outcomes if o.task_class == name and o.status == 200)
        bottom.plot([p[0] for p in points], [p[1] for p in points], ".", markersize=3, label=name)
    bottom.set_ylabel("latency (s)")
    bottom.set_xlabel("seconds since the workload started")
    bottom.legend(loc="upper right", fontsize=8)
    fig.suptitle("Zeta: weights and latency during a code burst")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

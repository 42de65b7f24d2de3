"""What the router costs: Zeta next to the backend itself, nginx, LiteLLM and the vLLM router, in one run.

Every target stands in front of the same two simulated backends (zeta-sim processes), is loaded by the same
client (`bench.router.loadgen`) on the same machine, and is measured in interleaved rounds (each round runs
every target once per mode and phase, in an order rotated from round to round), so that noise from a shared
machine falls on all of them alike. Results are ratios between targets; absolute times are this machine's.

    python -m bench.bench_router                 # full run, about 4 minutes
    python -m bench.bench_router --quick         # one short round, about 30 seconds
    python -m bench.bench_router --targets direct,nginx,zeta --duration 2 --concurrency 16

Two phases per mode (non-streaming ``max_tokens: 1``; streaming 16 tokens, one SSE event each):

- throughput: a closed loop of ``--concurrency`` connections sending back to back; req/s, p50/p99, and the
  CPU each process used, from which "requests per proxy CPU-second" (throughput per core) follows;
- moderate load: requests paced at a fixed rate, the same for every target (by default 30% of the
  throughput Zeta reached in the closed-loop warm-up); p50/p99 and the latency each proxy adds over the
  backend. A target that cannot sustain that rate is marked saturated.

Zeta's own ``X-Zeta-Overhead-Ms`` header (and LiteLLM's ``x-litellm-overhead-duration-ms``) are recorded as
a cross-check. Targets that cannot run here are listed with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from zeta_dev.localcluster.processes import StartupError

from .router import loadgen, procstat
from .router.loadgen import Measurement, RequestSpec, percentile
from .router.targets import ALL, LABELS, MODEL, STARTERS, Target, Unavailable, backends

PROMPT = (
    "Our team is planning a weekend hiking trip in the mountains with six people. Could you suggest what "
    "we should pack, how to split the shared gear fairly, and a sensible plan for the two days?"
)
MODES = ("plain", "stream")
MODE_TITLES = {"plain": "non-streaming (max_tokens 1)", "stream": "streaming (16 tokens, one SSE event each)"}
STREAM_TOKENS = 16


@dataclass
class Cpu:
    """CPU seconds used during one measurement, by whom."""

    wall: float = 0.0
    proxy: float = 0.0
    sims: float = 0.0
    client: float = 0.0
    machine: float = 0.0
    proxy_wait: float = 0.0
    """Seconds the proxy's threads were runnable but had no CPU (likewise for the sims and the client)."""
    sims_wait: float = 0.0
    client_wait: float = 0.0

    @property
    def other(self) -> float:
        """Everything else on the machine (other users' work, the kernel's softirq threads, ...)."""
        return max(0.0, self.machine - self.proxy - self.sims - self.client)


@dataclass
class Cell:
    m: Measurement
    cpu: Cpu
    round: int


@dataclass
class Plan:
    concurrency: int
    duration: float
    rounds: int
    warmup: float
    load_fraction: float
    rates: dict[str, float] = field(default_factory=dict)


def request_spec(mode: str, target: Target) -> RequestSpec:
    body: dict[str, object] = {"model": MODEL, "messages": [{"role": "user", "content": PROMPT}]}
    if mode == "stream":
        body |= {"max_tokens": STREAM_TOKENS, "stream": True}
    else:
        body |= {"max_tokens": 1}
    return RequestSpec(
        path="/v1/chat/completions",
        body=body,
        stream=mode == "stream",
        overhead_header=target.overhead_header,
        min_events=STREAM_TOKENS // 2 if mode == "stream" else 0,
    )


def measure(
    target: Target, sims_pids: list[int], mode: str, phase: str, plan: Plan, duration: float
) -> tuple[Measurement, Cpu]:
    spec = request_spec(mode, target)
    m = Measurement(target.key, mode, phase)
    proxy_pids = target.pids()
    before = _sample(proxy_pids, sims_pids)
    if phase == "paced":
        run = loadgen.paced(
            m,
            target.addresses,
            spec,
            rate=plan.rates[mode],
            concurrency=plan.concurrency,
            duration=duration,
        )
    else:
        run = loadgen.closed_loop(m, target.addresses, spec, concurrency=plan.concurrency, duration=duration)
    try:
        asyncio.run(run)
    except OSError as e:  # the target died or refused connections: count it, keep the others going
        m.errors[f"connect: {e}"] += 1
        m.elapsed = m.elapsed or duration
    after = _sample(proxy_pids, sims_pids)
    cpu = Cpu(**{name: getattr(after, name) - getattr(before, name) for name in CPU_FIELDS})
    return m, cpu


CPU_FIELDS = ("wall", "proxy", "sims", "client", "machine", "proxy_wait", "sims_wait", "client_wait")


def _sample(proxy_pids: list[int], sims_pids: list[int]) -> Cpu:
    return Cpu(
        wall=time.perf_counter(),
        proxy=procstat.cpu_seconds(proxy_pids),
        sims=procstat.cpu_seconds(sims_pids),
        client=procstat.self_cpu_seconds(),
        machine=procstat.machine_busy_seconds(),
        proxy_wait=procstat.runqueue_wait_seconds(proxy_pids),
        sims_wait=procstat.runqueue_wait_seconds(sims_pids),
        client_wait=procstat.runqueue_wait_seconds([os.getpid()]),
    )


def run_all(
    targets: list[Target], sims_pids: list[int], plan: Plan
) -> dict[tuple[str, str, str], list[Cell]]:
    """Warm-up (which also fixes the paced rates), then the interleaved rounds."""
    results: dict[tuple[str, str, str], list[Cell]] = defaultdict(list)
    warm: dict[str, list[float]] = defaultdict(list)
    for mode in MODES:
        for target in targets:
            m, _ = measure(target, sims_pids, mode, "closed", plan, plan.warmup)
            warm[mode].append(m.rate)
            _progress(f"warm-up {mode:6} {target.key:12} {m.rate:8.0f}/s  errors {sum(m.errors.values())}")
    keys = [t.key for t in targets]
    for mode in MODES:
        if mode not in plan.rates:
            # Moderate for the router under test; a target that cannot sustain it shows as saturated.
            base = warm[mode][keys.index("zeta")] if "zeta" in keys else min(warm[mode])
            plan.rates[mode] = _two_digits(plan.load_fraction * base)
    _progress(f"paced rates: {plan.rates}")
    n = len(targets)
    for r in range(plan.rounds):
        order = targets[r % n :] + targets[: r % n]
        for phase in ("closed", "paced"):
            for mode in MODES:
                for target in order:
                    m, cpu = measure(target, sims_pids, mode, phase, plan, plan.duration)
                    results[(target.key, mode, phase)].append(Cell(m, cpu, r))
                    _progress(
                        f"round {r + 1}/{plan.rounds} {phase:6} {mode:6} {target.key:12} {m.rate:8.0f}/s "
                        f"p50 {_ms(percentile(m.latencies, 0.5))} ms  errors {sum(m.errors.values())}"
                    )
    return results


def _two_digits(value: float) -> float:
    if value < 1:
        return 1.0
    return float(round(value, 1 - math.floor(math.log10(value))))


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- report ------------------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    ms = seconds * 1000
    return f"{ms:.2f}" if abs(ms) < 10 else f"{ms:.1f}"


def _x(value: float) -> str:
    return "-" if math.isnan(value) or math.isinf(value) else f"{value:.2f}x"


def _pooled(cells: list[Cell]) -> tuple[Measurement, Cpu]:
    first = cells[0].m
    m = Measurement(first.target, first.mode, first.phase)
    cpu = Cpu()
    for c in cells:
        m.elapsed += c.m.elapsed
        m.latencies += c.m.latencies
        m.ttfbs += c.m.ttfbs
        m.overheads += c.m.overheads
        m.events += c.m.events
        m.late += c.m.late
        m.dropped += c.m.dropped
        m.errors.update(c.m.errors)
        for name in CPU_FIELDS:
            setattr(cpu, name, getattr(cpu, name) + getattr(c.cpu, name))
    return m, cpu


def _per_core(m: Measurement, cpu: Cpu) -> float:
    return m.ok / cpu.proxy if cpu.proxy > 0 else float("nan")


def _round_values(cells: list[Cell], value: Callable[[Measurement, Cpu], float]) -> dict[int, float]:
    return {c.round: value(c.m, c.cpu) for c in cells}


def _spread(a: dict[int, float], b: dict[int, float], how: Callable[[float, float], float]) -> str:
    """min-max over rounds of how(a, b), when there are several rounds."""
    values = [how(a[r], b[r]) for r in a if r in b and not math.isnan(a[r]) and not math.isnan(b[r])]
    if len(values) < 2:
        return ""
    return f" ({min(values):.2f}-{max(values):.2f})"


def report(
    results: dict[tuple[str, str, str], list[Cell]],
    targets: list[Target],
    missing: dict[str, str],
    plan: Plan,
    machine: str,
    command: str,
) -> str:
    out: list[str] = []
    w = out.append
    keys = [t.key for t in targets]
    w(f"Machine: {machine}")
    w(f"Command: `{command}`")
    w(
        f"Load: same client for every target; closed loop at concurrency {plan.concurrency}, then paced at "
        f"{plan.rates['plain']:g} req/s (non-streaming) and {plan.rates['stream']:g} streams/s (streaming) "
        f"with at most {plan.concurrency} in flight; {plan.duration:g} s per measurement, {plan.rounds} "
        f"interleaved round(s), target order rotated each round."
    )
    w("Versions: " + "; ".join(f"{t.key}: {t.version}" for t in targets))
    w("")
    for mode in MODES:
        base, _ = _pooled(results[("direct", mode, "closed")]) if "direct" in keys else (None, None)
        zeta_cells = results.get(("zeta", mode, "closed"))
        zeta_core = _per_core(*_pooled(zeta_cells)) if zeta_cells else float("nan")
        w(f"#### Throughput, closed loop at concurrency {plan.concurrency}: {MODE_TITLES[mode]}")
        w("")
        extra = " | TTFB p50 ms | events/stream" if mode == "stream" else ""
        w(
            f"| target | req/s | vs direct | p50 ms | p99 ms{extra} | proxy CPU (cores) | req per proxy "
            f"CPU-second | Zeta per core vs this (per round) | errors |"
        )
        w("|---|---:|---:|---:|---:|" + ("---:|---:|" if mode == "stream" else "") + "---:|---:|---:|---:|")
        for key in [*keys, *missing]:
            if key in missing:
                w(f"| {LABELS[key]} | not run: {missing[key]} |" + " |" * (8 if mode == "stream" else 6))
                continue
            cells = results[(key, mode, "closed")]
            m, cpu = _pooled(cells)
            vs = m.rate / base.rate if base is not None and base.rate else float("nan")
            core = _per_core(m, cpu)
            if key == "zeta" or key == "direct":
                zeta_vs = "-"
            else:
                per_round = _spread(
                    _round_values(zeta_cells or [], _per_core),
                    _round_values(cells, _per_core),
                    lambda a, b: a / b,
                )
                zeta_vs = _x(zeta_core / core) + per_round
            stream_cols = (
                f" | {_ms(percentile(m.ttfbs, 0.5))} | {statistics.fmean(m.events) if m.events else 0:.1f}"
                if mode == "stream"
                else ""
            )
            w(
                f"| {LABELS[key]} | {m.rate:.0f} | {_x(vs)} | {_ms(percentile(m.latencies, 0.5))} | "
                f"{_ms(percentile(m.latencies, 0.99))}{stream_cols} | "
                f"{'-' if key == 'direct' else f'{cpu.proxy / m.elapsed:.2f}'} | "
                f"{'-' if key == 'direct' else f'{core:.0f}'} | {zeta_vs} | {_errors(m)} |"
            )
        w("")
    for mode in MODES:
        rate = plan.rates[mode]
        base_cells = results.get(("direct", mode, "paced"))
        base, _ = _pooled(base_cells) if base_cells else (None, None)
        w(f"#### Moderate load, paced at {rate:g}/s: {MODE_TITLES[mode]}")
        w("")
        ttfb = " | TTFB p50 ms | TTFB added p50 ms" if mode == "stream" else ""
        w(
            f"| target | achieved/s | late / dropped sends | p50 ms | p99 ms | added p50 ms (per round) | "
            f"added p99 ms{ttfb} | proxy CPU ms per request | waiting for a CPU, ms per request: proxy / "
            f"sims / client | errors |"
        )
        w(
            "|---|---:|---:|---:|---:|---:|---:|"
            + ("---:|---:|" if mode == "stream" else "")
            + "---:|---:|---:|"
        )
        for key in keys:
            cells = results[(key, mode, "paced")]
            m, cpu = _pooled(cells)
            per = 1000 / m.ok if m.ok else float("nan")
            proxy_cpu = "-" if key == "direct" else f"{cpu.proxy * per:.3f}"
            waits = (
                f"{'-' if key == 'direct' else f'{cpu.proxy_wait * per:.3f}'} / {cpu.sims_wait * per:.3f} / "
                f"{cpu.client_wait * per:.3f}"
            )
            p50, p99 = percentile(m.latencies, 0.5), percentile(m.latencies, 0.99)
            if base is None or key == "direct":
                added50 = added99 = "-"
                added_ttfb = "-"
            else:
                per_round = _spread(
                    _round_values(cells, lambda m, c: percentile(m.latencies, 0.5) * 1000),
                    _round_values(base_cells or [], lambda m, c: percentile(m.latencies, 0.5) * 1000),
                    lambda a, b: a - b,
                )
                added50 = _ms(p50 - percentile(base.latencies, 0.5)) + per_round
                added99 = _ms(p99 - percentile(base.latencies, 0.99))
                added_ttfb = _ms(percentile(m.ttfbs, 0.5) - percentile(base.ttfbs, 0.5))
            stream_cols = f" | {_ms(percentile(m.ttfbs, 0.5))} | {added_ttfb}" if mode == "stream" else ""
            sent = m.ok + sum(m.errors.values())
            saturated = " (saturated)" if m.dropped > 0.01 * (sent + m.dropped) or m.late > 0.1 * sent else ""
            w(
                f"| {LABELS[key]} | {m.rate:.0f}{saturated} | {m.late} / {m.dropped} | {_ms(p50)} | {_ms(p99)} | "
                f"{added50} | {added99}{stream_cols} | {proxy_cpu} | {waits} | {_errors(m)} |"
            )
        w("")
    w("#### Self-reported overhead headers (cross-check)")
    w("")
    w("| target | header | mode | phase | p50 ms | p99 ms | samples |")
    w("|---|---|---|---|---:|---:|---:|")
    for target in targets:
        if target.overhead_header is None:
            continue
        for mode in MODES:
            for phase in ("closed", "paced"):
                m, _ = _pooled(results[(target.key, mode, phase)])
                w(
                    f"| {target.label} | `{target.overhead_header}` | {mode} | {phase} | "
                    f"{percentile(m.overheads, 0.5):.3f} | {percentile(m.overheads, 0.99):.3f} | {len(m.overheads)} |"
                )
    w("")
    w("#### Where the CPU went during the closed-loop measurements (CPU ms per request)")
    w("")
    w(
        "| target | mode | proxy | both sims | load generator | rest of machine (cores) | machine busy (of all cores) |"
    )
    w("|---|---|---:|---:|---:|---:|---:|")
    cores = os.cpu_count() or 1
    for key in keys:
        for mode in MODES:
            m, cpu = _pooled(results[(key, mode, "closed")])
            per = 1000 / m.ok if m.ok else float("nan")
            w(
                f"| {LABELS[key]} | {mode} | {cpu.proxy * per:.3f} | {cpu.sims * per:.3f} | "
                f"{cpu.client * per:.3f} | {cpu.other / cpu.wall:.2f} | {cpu.machine / cpu.wall / cores:.0%} |"
            )
    w("")
    w(headline(results, keys))
    return "\n".join(out)


def _errors(m: Measurement) -> str:
    if not m.errors:
        return "0"
    return ", ".join(f"{n} {kind}" for kind, n in m.errors.most_common(3))


def headline(results: dict[tuple[str, str, str], list[Cell]], keys: list[str]) -> str:
    lines = ["#### Headline"]
    if "zeta" not in keys:
        return "\n".join([*lines, "", "(Zeta not measured)"])
    lines.append("")
    for mode in MODES:
        if "direct" in keys:
            z, _ = _pooled(results[("zeta", mode, "paced")])
            d, _ = _pooled(results[("direct", mode, "paced")])
            metric = "TTFB" if mode == "stream" else "latency"
            zs = z.ttfbs if mode == "stream" else z.latencies
            ds = d.ttfbs if mode == "stream" else d.latencies
            lines.append(
                f"- {mode}: Zeta adds {_ms(percentile(zs, 0.5) - percentile(ds, 0.5))} ms to the p50 {metric} "
                f"at moderate load (goal < 1 ms); its own X-Zeta-Overhead-Ms p50 is "
                f"{percentile(z.overheads, 0.5):.3f} ms."
            )
        zeta_core = _per_core(*_pooled(results[("zeta", mode, "closed")]))
        ratios = []
        for other in ("litellm", "nginx", "vllm-router"):
            if other in keys:
                ratios.append(
                    f"{_x(zeta_core / _per_core(*_pooled(results[(other, mode, 'closed')])))} {other}"
                )
        if ratios:
            lines.append(f"- {mode}: Zeta's requests per CPU-second are " + ", ".join(ratios) + ".")
    return "\n".join(lines)


# -- main --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.bench_router",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="one short round (about 30 s)")
    p.add_argument("--duration", type=float, help="seconds per measurement (default 3, quick 0.8)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3, quick 1)")
    p.add_argument("--concurrency", type=int, default=16, help="connections (default 16)")
    p.add_argument(
        "--targets",
        default=",".join(ALL),
        help=f"comma-separated subset of {','.join(ALL)} (default all); one that cannot run is reported",
    )
    p.add_argument(
        "--require",
        default="",
        help="comma-separated targets that must run: exit 2 instead of reporting them as not run",
    )
    p.add_argument("--rate", type=float, help="paced non-streaming req/s (default: see --load-fraction)")
    p.add_argument("--stream-rate", type=float, help="paced streams/s (default: see --load-fraction)")
    p.add_argument(
        "--load-fraction",
        type=float,
        default=0.3,
        help="paced rate as a fraction of Zeta's closed-loop warm-up throughput (default 0.3)",
    )
    p.add_argument("--logs", type=Path, help="keep every process's log in this directory")
    args = p.parse_args(argv)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.require = [t.strip() for t in args.require.split(",") if t.strip()]
    unknown = set(args.targets + args.require) - set(ALL)
    if unknown:
        p.error(f"unknown targets {sorted(unknown)}; choose from {','.join(ALL)}")
    if "direct" not in args.targets:
        args.targets.insert(0, "direct")  # everything is compared with it
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan(
        concurrency=args.concurrency,
        duration=args.duration or (0.8 if args.quick else 3.0),
        rounds=args.rounds or (1 if args.quick else 3),
        warmup=0.3 if args.quick else 1.5,
        load_fraction=args.load_fraction,
    )
    if args.rate:
        plan.rates["plain"] = args.rate
    if args.stream_rate:
        plan.rates["stream"] = args.stream_rate
    command = " ".join(
        ["python -m bench.bench_router", shlex.join(argv if argv is not None else sys.argv[1:])]
    ).strip()
    machine = procstat.machine_description()
    _progress(f"machine: {machine}")
    with contextlib.ExitStack() as stack:
        workdir = args.logs or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="zeta-bench-")))
        workdir.mkdir(parents=True, exist_ok=True)
        sims = stack.enter_context(backends(workdir / "sims"))
        sims_pids = [p for s in sims for p in procstat.descendants(s.process.pid)]
        targets: list[Target] = []
        missing: dict[str, str] = {}
        for key in [k for k in ALL if k in args.targets]:
            started = time.perf_counter()
            try:
                targets.append(stack.enter_context(STARTERS[key](sims, workdir)))
                _progress(f"started {key} in {time.perf_counter() - started:.1f}s")
            except (Unavailable, StartupError) as e:
                missing[key] = str(e).splitlines()[0]
                _progress(f"NOT RUN {key}: {e}")
                if key in args.require:
                    print(f"required target {key} could not run: {e}", file=sys.stderr)
                    return 2
        gc.collect()
        gc.freeze()  # the client's own garbage collections stay small during measurements
        results = run_all(targets, sims_pids, plan)
    print(report(results, targets, missing, plan, machine, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Soak (issue 11, item 7): the demo's system at a steady load for a long time, watched for leaks.

Starts exactly what ``python -m zeta_dev.demo`` starts (real control plane, Prometheus, three simulators, the
operator and the router, see `zeta_dev.demo.stack`) and sends the demo's request classes at a steady open-loop
rate through the router for ``--minutes``. Every ``--sample-every`` seconds it records, per process (router,
operator, simulators, Prometheus): RSS (VmRSS), open file descriptors, CPU seconds, the size of the router's and
operator's /metrics (a label-cardinality leak shows there first); plus request outcomes, the routing table
version in the ConfigMap annotation, and the machine's load average.

    python -m bench.soak --minutes 30                 # the recorded run (docs/benchmarks.md, "Soak")
    python -m bench.soak --minutes 2 --warmup-minutes 0.5 --sample-every 10   # smoke run
    python -m bench.soak --minutes 15 --trace zeta_operator.operator   # where that process's memory grows

With ``--trace MODULE`` the child started as ``python -m MODULE`` runs under tracemalloc (bench/soak_trace) and
dumps a snapshot every ``--trace-every`` seconds; at the end the soak prints what grew between the first snapshot
after the warm-up and the last one, by source line. Tracing slows that process and adds to its RSS, so a traced
run's RSS figures are not the soak's figures.

Goal: router and operator RSS grow < 5% from the end of the warm-up to the end, 0 failed requests. Prints a
markdown summary; every sample goes to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes

from bench.router.procstat import cpu_seconds, machine_description
from zeta_dev.demo.scenario import MIX, ClassLoad
from zeta_dev.demo.settings import NAMESPACE
from zeta_dev.demo.show import step
from zeta_dev.demo.stack import Stack, running_stack
from zeta_dev.demo.workload import send

VERSION_ANNOTATION = "zeta.dev/table-version"  # written by the operator with every table (routestore.py)
SHARES = {  # the demo's classes, weighted so that no backend is pushed past its capacity at ~10 req/s
    "chat-simple": 0.62,
    "summarize": 0.15,
    "code-simple": 0.15,
    "code-complex": 0.05,
    "reasoning": 0.03,
}


def soak_mix(rate: float) -> list[ClassLoad]:
    """The demo's request classes (prompts, tokens, headers) at ``rate`` requests per second in all."""
    return [dataclasses.replace(load, rate=rate * SHARES[load.task_class]) for load in MIX]


# --- what is sampled ---------------------------------------------------------------------------------------


def proc_status_kib(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def process_sample(pid: int) -> dict[str, Any]:
    return {
        "rss_kib": proc_status_kib(pid, "VmRSS"),
        "fds": open_fds(pid),
        "threads": proc_status_kib(pid, "Threads"),
        "cpu_s": round(cpu_seconds([pid]), 2),
    }


def watched_pids(stack: Stack) -> dict[str, int]:
    pids = {"router": stack.router.process.pid, "operator": stack.operator.process.pid}
    pids |= {f"sim {name}": sim.process.pid for name, sim in stack.sims.items()}
    if stack.prometheus.process is not None:
        pids["prometheus"] = stack.prometheus.process.pid
    return pids


def table_version(core: kubernetes.client.CoreV1Api, configmap: str) -> int | None:
    cm = core.read_namespaced_config_map(configmap, NAMESPACE)
    value = (cm.metadata.annotations or {}).get(VERSION_ANNOTATION)
    return int(value) if value is not None else None


def metrics_bytes(fetch: Callable[[], str]) -> int | None:
    try:
        return len(fetch())
    except OSError:
        return None


# --- the load --------------------------------------------------------------------------------------------


class Tally:
    """Request outcomes so far, and the latencies since the last sample."""

    def __init__(self) -> None:
        self.statuses: Counter[int] = Counter()
        self.backends: Counter[str] = Counter()
        self.latencies: list[float] = []

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        """Connection errors (status 0) and every answer that is not 2xx."""
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def take_latencies(self) -> list[float]:
        taken, self.latencies = self.latencies, []
        return taken


async def steady_load(url: str, mix: list[ClassLoad], seconds: float, tally: Tally, seed: int = 11) -> None:
    """Poisson arrivals at the mix's total rate for ``seconds``, each request's class drawn by its rate; then
    wait for every answer. Open loop: a slow answer does not slow the offered load."""
    rng = random.Random(seed)
    total = sum(load.rate for load in mix)
    weights = [load.rate / total for load in mix]

    async def one(load: ClassLoad, t: float) -> None:
        outcome = await send(session, url, load, t, "soak")
        tally.statuses[outcome.status] += 1
        tally.backends[outcome.backend or "-"] += 1
        tally.latencies.append(outcome.latency)

    in_flight: set[asyncio.Task[None]] = set()
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
        start, t = time.monotonic(), 0.0
        while (t := t + rng.expovariate(total)) < seconds:
            delay = start + t - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(one(rng.choices(mix, weights)[0], t))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)


async def sampler(stack: Stack, tally: Tally, every: float, stop: asyncio.Event) -> list[dict[str, Any]]:
    core = kubernetes.client.CoreV1Api(stack.cluster.api_client())
    pids = watched_pids(stack)
    start, samples = time.monotonic(), []

    def look() -> dict[str, Any]:
        latencies = sorted(tally.take_latencies())
        return {
            "t": round(time.monotonic() - start, 1),
            "load_avg": os.getloadavg(),
            "processes": {name: process_sample(pid) for name, pid in pids.items()},
            "router_metrics_bytes": metrics_bytes(stack.router.metrics_text),
            "operator_metrics_bytes": metrics_bytes(stack.operator.metrics),
            "table_version": table_version(core, stack.configmap),
            "answered": tally.answered,
            "failed": tally.failed,
            "p50_s": round(statistics.median(latencies), 3) if latencies else None,
            "p99_s": round(latencies[int(0.99 * (len(latencies) - 1))], 3) if latencies else None,
        }

    while True:
        sample = await asyncio.to_thread(look)
        samples.append(sample)
        print(_progress(sample), flush=True)
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            continue
        samples.append(await asyncio.to_thread(look))  # the final state, after the last answer
        return samples


def _progress(s: dict[str, Any]) -> str:
    p = s["processes"]
    return (
        f"    t={s['t']:7.1f}s  router {p['router']['rss_kib'] / 1024:6.1f} MiB {p['router']['fds']:3} fds  "
        f"operator {p['operator']['rss_kib'] / 1024:6.1f} MiB {p['operator']['fds']:3} fds  "
        f"table v{s['table_version']}  answered {s['answered']} failed {s['failed']}  p50 {s['p50_s']}s  "
        f"load {s['load_avg'][0]:.2f}"
    )


async def soak(
    stack: Stack, *, rate: float, seconds: float, every: float
) -> tuple[list[dict[str, Any]], Tally]:
    tally, stop = Tally(), asyncio.Event()
    watcher = asyncio.create_task(sampler(stack, tally, every, stop))
    try:
        await steady_load(stack.router.url, soak_mix(rate), seconds, tally)
    finally:
        stop.set()
    return await watcher, tally


# --- the leak hunt (--trace) ---------------------------------------------------------------------------------

TRACE_SITE = Path(__file__).resolve().parent / "soak_trace"
TRACE_AFTER = 60.0
"""Seconds after its start before the traced process starts tracing: its imports, traced, outlast the harness's
start-up wait on a loaded machine."""


def enable_tracing(module: str, directory: Path, every: float) -> None:
    """Make the child started as ``python -m module`` trace its allocations (children inherit this environment)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.snap"):
        old.unlink()
    os.environ |= {
        "ZETA_TRACE_DIR": str(directory),
        "ZETA_TRACE_MODULE": module,
        "ZETA_TRACE_EVERY": str(every),
    }
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(TRACE_SITE), os.environ.get("PYTHONPATH")) if p
    )


def print_growth(directory: Path, warmup: float, every: float, top: int = 15) -> None:
    """What grew, by source line, from the first snapshot after the warm-up to the last one."""
    snaps = sorted(directory.glob("*.snap"))
    # Snapshot n is taken TRACE_AFTER + (n + 1) * every seconds after the process started (about when the load did).
    first_warm = int(max(0.0, warmup - TRACE_AFTER) // every)
    if len(snaps) <= first_warm + 1:
        print(f"\n(--trace: {len(snaps)} snapshots, too few to compare after the warm-up)")
        return
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>"),
              tracemalloc.Filter(False, "<unknown>")]  # fmt: skip
    before = tracemalloc.Snapshot.load(str(snaps[first_warm])).filter_traces(ignore)
    after = tracemalloc.Snapshot.load(str(snaps[-1])).filter_traces(ignore)
    total = sum(s.size for s in after.statistics("filename")) - sum(
        s.size for s in before.statistics("filename")
    )
    print(
        f"\ntraced heap growth {snaps[first_warm].name} -> {snaps[-1].name}: {total / 1024:+.1f} KiB; top lines:"
    )
    for stat in after.compare_to(before, "lineno")[:top]:
        print(f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {stat.traceback[0]}")
    print("top growth with its callers:")
    for stat in after.compare_to(before, "traceback")[:3]:
        print(f"    {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks")
        for line in stat.traceback.format(limit=8):
            print(f"        {line}")


# --- the report ------------------------------------------------------------------------------------------


def growth(samples: list[dict[str, Any]], name: str, warmup: float) -> dict[str, Any]:
    """RSS of one process at the end of the warm-up and at the end, the growth between them, the peak, and
    the least-squares slope over the samples after the warm-up (MiB per hour): a leak is a steady slope."""
    after = [s for s in samples if s["t"] >= warmup and s["processes"][name]["rss_kib"] is not None]
    first, last = after[0]["processes"][name], after[-1]["processes"][name]
    start_mib, end_mib = first["rss_kib"] / 1024, last["rss_kib"] / 1024
    return {
        "rss_start_mib": round(start_mib, 1),
        "rss_end_mib": round(end_mib, 1),
        "rss_growth_pct": round(100 * (end_mib - start_mib) / start_mib, 2),
        "rss_peak_mib": round(max(s["processes"][name]["rss_kib"] for s in after) / 1024, 1),
        "rss_slope_mib_per_h": round(
            _slope([(s["t"], s["processes"][name]["rss_kib"] / 1024) for s in after]) * 3600, 2
        ),
        "fds_first": samples[0]["processes"][name]["fds"],
        "fds_warm": first["fds"],
        "fds_end": last["fds"],
        "fds_peak": max(s["processes"][name]["fds"] or 0 for s in samples),
    }


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else 0.0


def summarize(samples: list[dict[str, Any]], tally: Tally, warmup: float) -> dict[str, Any]:
    names = list(samples[0]["processes"])
    versions = [s["table_version"] for s in samples if s["table_version"] is not None]
    return {
        "processes": {name: growth(samples, name, warmup) for name in names},
        "requests": tally.answered,
        "failed": tally.failed,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "backends": dict(tally.backends.most_common()),
        "table_versions_written": versions[-1] - versions[0] if versions else 0,
        "table_version_first_last": [versions[0], versions[-1]] if versions else None,
        "metrics_bytes": {
            "router": [samples[0]["router_metrics_bytes"], samples[-1]["router_metrics_bytes"]],
            "operator": [samples[0]["operator_metrics_bytes"], samples[-1]["operator_metrics_bytes"]],
        },
        "load_avg_1m": {
            "min": min(s["load_avg"][0] for s in samples),
            "mean": round(statistics.fmean(s["load_avg"][0] for s in samples), 2),
            "max": max(s["load_avg"][0] for s in samples),
        },
    }


def print_summary(summary: dict[str, Any], *, command: str, machine: str, rate: float, minutes: float,
                  warmup_minutes: float) -> None:  # fmt: skip
    print(f"\n`{command}`  \n{machine}  \n{minutes:g} min at {rate:g} req/s offered, RSS compared from minute "
          f"{warmup_minutes:g} (end of warm-up) to the end\n")  # fmt: skip
    print(
        "| process | RSS after warm-up | RSS at end | growth | peak | slope | fds start / warm / end / peak |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, g in summary["processes"].items():
        print(f"| {name} | {g['rss_start_mib']} MiB | {g['rss_end_mib']} MiB | {g['rss_growth_pct']:+.2f}% | "
              f"{g['rss_peak_mib']} MiB | {g['rss_slope_mib_per_h']:+.2f} MiB/h | "
              f"{g['fds_first']} / {g['fds_warm']} / {g['fds_end']} / {g['fds_peak']} |")  # fmt: skip
    load = summary["load_avg_1m"]
    print(f"\nrequests {summary['requests']}, failed {summary['failed']} (statuses {summary['statuses']}); "
          f"by backend {summary['backends']}; table versions written {summary['table_versions_written']} "
          f"{summary['table_version_first_last']}; /metrics bytes {summary['metrics_bytes']}; "
          f"load average (1 min) min {load['min']:.2f} mean {load['mean']:.2f} max {load['max']:.2f}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load runs")
    parser.add_argument("--warmup-minutes", type=float, default=5.0, help="RSS growth is counted after this")
    parser.add_argument("--rate", type=float, default=10.0, help="requests per second offered, all classes")
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--out", type=Path, default=Path("out/soak/soak.json"), help="every sample, as JSON")
    parser.add_argument(
        "--trace", metavar="MODULE", help="trace allocations in the child run as python -m MODULE"
    )
    parser.add_argument(
        "--trace-every", type=float, default=60.0, help="seconds between tracemalloc snapshots"
    )
    args = parser.parse_args(argv)
    trace_dir = args.out.parent / "trace"
    if args.trace:
        enable_tracing(args.trace, trace_dir.resolve(), args.trace_every)
    machine = machine_description()
    workdir = Path(tempfile.mkdtemp(prefix="zeta-soak-"))
    try:
        with running_stack(workdir) as stack:
            step(f"soak: {args.rate:g} req/s for {args.minutes:g} min, a sample every {args.sample_every:g}s")
            samples, tally = asyncio.run(
                soak(stack, rate=args.rate, seconds=args.minutes * 60, every=args.sample_every)
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        step("stopped; nothing left running")
    summary = summarize(samples, tally, warmup=args.warmup_minutes * 60)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "machine": machine,
                                    "summary": summary, "samples": samples}, indent=1))  # fmt: skip
    command = "python -m bench.soak " + " ".join(argv if argv is not None else sys.argv[1:])
    print_summary(summary, command=command.strip(), machine=machine, rate=args.rate, minutes=args.minutes,
                  warmup_minutes=args.warmup_minutes)  # fmt: skip
    if args.trace:
        print_growth(trace_dir, args.warmup_minutes * 60, args.trace_every)
    print(f"wrote {args.out}")
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

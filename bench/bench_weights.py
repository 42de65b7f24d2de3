"""How the weight computation grows with the fleet: one `decide` cycle for 10, 100 and 1,000 backends.

Side by side in one run, as ratios to the 10-backend case (absolute times depend on the machine; the ratios
show how the cost grows). Each size runs the same number of cycles with loads that keep changing, so
smoothing, offload and the step limit all do real work.

    python -m bench.bench_weights [--cycles 200]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

from zeta_operator.api.policy import RoutingPolicySpec
from zeta_operator.operator.weights import BackendInput, ControllerState, Reading, decide

TASKS = ("chat", "code", "summarize", "reasoning")


def fleet(n: int, rng: random.Random) -> list[BackendInput]:
    backends = []
    for i in range(n):
        size = (4, 7, 14)[i % 3]
        backends.append(
            BackendInput(
                name=f"b{i:04d}",
                tasks=frozenset(TASKS[: 2 + i % 3]),
                max_complexity=(2, 4, 5)[i % 3],
                size_billions=size,
                max_concurrency=16,
                ready_endpoints=1 + i % 3,
                newest_ready_since=0.0,
                signals={"queueDepth": Reading(rng.uniform(0, 12), "ok"), "cpu": Reading(rng.random(), "ok")},
                latency={},
            )
        )
    return backends


def policy(backends: list[BackendInput]) -> RoutingPolicySpec:
    names = [b.name for b in backends]
    small = [b.name for b in backends if b.max_complexity == 2]
    coders = [b.name for b in backends if b.max_complexity == 4]
    large = [b.name for b in backends if b.max_complexity == 5]
    return RoutingPolicySpec.model_validate(
        {
            "backends": {"names": names[:256]} if len(names) <= 256 else {"selector": {"matchLabels": {"a": "b"}}},
            "routingTable": {"configMapName": "t"},
            "classes": [
                {"name": "chat-simple", "taskType": "chat", "complexity": {"min": 1, "max": 2},
                 "preferred": small[:32], "fallbacks": large[:32]},
                {"name": "code-simple", "taskType": "code", "complexity": {"min": 1, "max": 2},
                 "preferred": coders[:32], "fallbacks": small[:16] + large[:16]},
                {"name": "code-complex", "taskType": "code", "complexity": {"min": 3, "max": 4},
                 "preferred": coders[:32], "fallbacks": large[:32]},
                {"name": "reasoning", "taskType": "reasoning", "complexity": {"min": 3, "max": 5},
                 "preferred": large[:32]},
            ],
        }
    )  # fmt: skip


def run(n: int, cycles: int, seed: int) -> float:
    """Median seconds per decide() cycle."""
    rng = random.Random(seed)
    backends = fleet(n, rng)
    spec = policy(backends)
    state: ControllerState | None = None
    times = []
    for c in range(cycles):
        backends = [
            BackendInput(**{**b.__dict__, "signals": {"queueDepth": Reading(rng.uniform(0, 12), "ok")}})
            for b in backends
        ]
        started = time.perf_counter()
        decision = decide(policy=spec, backends=backends, previous=state, now=float(c * 5))
        times.append(time.perf_counter() - started)
        state = decision.state
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=200)
    args = parser.parse_args()
    sizes = (10, 100, 1000)
    results = {n: run(n, args.cycles, seed=n) for n in sizes}
    base = results[10]
    print(
        f"machine: {platform.node()} {platform.machine()} {platform.processor() or ''} python {platform.python_version()}"
    )
    print("| backends | median per cycle | ratio to 10 backends | per backend vs 10 |\n|---:|---:|---:|---:|")
    for n, t in results.items():
        print(f"| {n} | {t * 1e3:.3f} ms | {t / base:.1f}x | {(t / n) / (base / 10):.2f}x |")


if __name__ == "__main__":
    main()

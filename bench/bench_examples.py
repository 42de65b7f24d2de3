"""What a policy's classifier examples cost per request: the whole classification (learned model included) with
0, 8 and 64 examples, side by side and interleaved in one run, as ratios to 0 examples.

Requests: the prompts of dev/corpus/humaneval.jsonl and inrepo.jsonl (last user turn, as the router sees it);
examples: the other prompts of the same files (their first 250 characters, to stay within the 16384 in all),
so some requests match one and most do not.

    python -m bench.bench_examples [--rounds 15]
    python -m bench.bench_examples --similarity    # where MATCH_FROM comes from (every dev/corpus/*.jsonl)
    python -m bench.bench_examples --effect        # what 64 labelled examples of other prompts change
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zeta_operator.api.policy import ClassifierExample, ClassifierSettings
from zeta_operator.api.table import ComplexityRange, TableClass
from zeta_operator.router.classify import Classification, Classifier
from zeta_operator.router.examples import ExampleIndex
from zeta_operator.router.model import shipped
from zeta_operator.router.payload import PromptView, parse_request

CORPUS = Path(__file__).resolve().parents[1] / "dev" / "corpus"
TASKS = ("chat", "code", "reasoning", "summarize")


def rows() -> list[dict[str, Any]]:
    return [
        json.loads(line) for name in ("inrepo.jsonl", "humaneval.jsonl") for line in (CORPUS / name).open()
    ]


def view(row: dict[str, Any]) -> PromptView:
    return parse_request(json.dumps({"model": "m", "messages": row["messages"]}).encode(), "chat").prompt


def classifier(examples: list[ClassifierExample], tasks: Sequence[str] = TASKS) -> Classifier:
    classes = [
        TableClass(
            name=t,
            task_type=t,
            complexity=ComplexityRange(),
            priority=5,
            latency_objective_seconds=1,
            weights={},
        )
        for t in tasks
    ]
    settings = ClassifierSettings(examples=examples)
    return Classifier(settings, classes, default_class=None, model=shipped())


def similarity_report(corpus: Path, *, queries: int = 400, examples: int = 64) -> None:
    """How close the nearest unrelated prompt comes (each query against ``examples`` random prompts of other
    groups), and how close prompts that share material with another ask come (pairs within a group)."""
    data = [json.loads(line) for path in sorted(corpus.glob("*.jsonl")) for line in path.open()]
    turns = [view(r).last_user for r in data]
    rng = random.Random(1)
    nearest = []
    for i in rng.sample(range(len(data)), min(queries, len(data))):
        others = [
            j for j in rng.sample(range(len(data)), examples + 16) if data[j]["group"] != data[i]["group"]
        ]
        index = ExampleIndex(
            [
                ClassifierExample(text=turns[j][:2048], task_type="chat", complexity=3)
                for j in others[:examples]
                if turns[j].strip()
            ]
        )
        nearest.append(max(index.similarities(turns[i])))
    nearest.sort()
    at = [nearest[int(q * (len(nearest) - 1))] for q in (0.5, 0.9, 0.99, 1.0)]
    print(
        f"unrelated, most similar of {examples}: median {at[0]:.2f}, p90 {at[1]:.2f}, p99 {at[2]:.2f}, max {at[3]:.2f}"
    )
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(data):
        groups[str(r["group"])].append(i)
    pairs = [
        (a, b) for ids in groups.values() for a in ids for b in ids if a != b and 0 < len(turns[a]) <= 2048
    ]
    high = [
        (a, b)
        for a, b in pairs
        if ExampleIndex([ClassifierExample(text=turns[a], task_type="chat", complexity=3)]).similarities(
            turns[b]
        )[0]
        >= 0.9
    ]
    flips = sum(1 for a, b in high if int(data[a]["complexity"]) <= 2 < int(data[b]["complexity"]))
    print(
        f"same group: {len(high)} of {len(pairs)} pairs >= 0.9, {flips} of them a simple turn against a complex one"
    )


def effect_report(corpus: Path, *, queries: int = 600, examples: int = 64) -> None:
    """Classification of random corpus prompts without and with 64 labelled examples (other prompts of the
    corpus, other groups, their true labels): accuracy, and complex prompts classified simple."""
    data = [json.loads(line) for path in sorted(corpus.glob("*.jsonl")) for line in path.open()]
    turns = [view(r) for r in data]
    rng = random.Random(2)
    served = sorted({str(r["task"]) for r in data})
    plain = classifier([], served)
    counts = {
        "task": [0, 0],
        "tier": [0, 0],
        "complex->simple": [0, 0],
        "changed": [0, 0],
        "by example": [0, 0],
    }
    picked = rng.sample(range(len(data)), min(queries, len(data)))
    for i in picked:
        others = [
            j for j in rng.sample(range(len(data)), examples * 2) if data[j]["group"] != data[i]["group"]
        ]
        chosen: dict[str, ClassifierExample] = {}
        budget = 16 * 1024
        for j in others:
            text = turns[j].last_user[:250]
            key = " ".join(text.lower().split())
            if key and key not in chosen and len(chosen) < examples and budget >= len(text):
                chosen[key] = ClassifierExample(
                    text=text, task_type=str(data[j]["task"]), complexity=int(data[j]["complexity"])
                )
                budget -= len(text)
        with_examples = classifier(list(chosen.values()), served)
        truth_task, truth_level = str(data[i]["task"]), int(data[i]["complexity"])
        results = [c.classify({}, "m", turns[i]) for c in (plain, with_examples)]
        for k, got in enumerate(results):
            counts["task"][k] += got.task_type == truth_task
            counts["tier"][k] += (got.complexity <= 2) == (truth_level <= 2)
            counts["complex->simple"][k] += truth_level > 2 and got.simple_probability >= 0.91
            counts["by example"][k] += got.source == "example"
        counts["changed"][1] += _decision(results[0]) != _decision(results[1])
    n = len(picked)
    print(f"{n} prompts, each with {examples} labelled examples of other groups (first 250 characters)")
    _table(counts, n)
    variants_report(data, turns, served, rng, examples=examples)


def variants_report(
    data: list[dict[str, Any]],
    turns: list[PromptView],
    served: list[str],
    rng: random.Random,
    *,
    examples: int,
) -> None:
    """Labelled prompts as examples, and the same prompts reworded a little as requests (one word dropped, one
    repeated, case changed): how often the examples' labels come back, against the model alone."""
    short = [
        i for i, t in enumerate(turns) if 20 <= len(t.last_user) <= 250 and len(t.last_user.split()) >= 6
    ]
    plain = classifier([], served)
    counts = {
        "task": [0, 0],
        "tier": [0, 0],
        "complex->simple": [0, 0],
        "changed": [0, 0],
        "by example": [0, 0],
    }
    n = 0
    for start in range(0, min(len(short), 10 * examples), examples):
        batch = short[start : start + examples]
        chosen: dict[str, ClassifierExample] = {}
        for i in batch:
            key = " ".join(turns[i].last_user.lower().split())
            chosen.setdefault(
                key,
                ClassifierExample(
                    text=turns[i].last_user,
                    task_type=str(data[i]["task"]),
                    complexity=int(data[i]["complexity"]),
                ),
            )
        with_examples = classifier(list(chosen.values()), served)
        for i in batch:
            words = turns[i].last_user.split()
            drop, repeat = rng.sample(range(len(words)), 2)
            reworded = [w.upper() if k == repeat else w for k, w in enumerate(words) if k != drop]
            reworded.insert(repeat if repeat < drop else repeat - 1, words[repeat])
            text = " ".join(reworded)
            request = parse_request(
                json.dumps({"model": "m", "messages": [{"role": "user", "content": text}]}).encode(), "chat"
            ).prompt
            results = [c.classify({}, "m", request) for c in (plain, with_examples)]
            truth_task, truth_level = str(data[i]["task"]), int(data[i]["complexity"])
            for k, got in enumerate(results):
                counts["task"][k] += got.task_type == truth_task
                counts["tier"][k] += (got.complexity <= 2) == (truth_level <= 2)
                counts["complex->simple"][k] += truth_level > 2 and got.simple_probability >= 0.91
                counts["by example"][k] += got.source == "example"
            counts["changed"][1] += _decision(results[0]) != _decision(results[1])
            n += 1
    print(
        f"\n{n} reworded prompts (a word dropped, one repeated in capitals), their originals as {examples} examples"
    )
    _table(counts, n)


def _decision(c: Classification) -> tuple[str, int]:
    return c.task_class.name, c.complexity


def _table(counts: dict[str, list[int]], n: int) -> None:
    print("| | without examples | with examples |")
    print("|---|---:|---:|")
    for name in ("task", "tier"):
        print(f"| {name} accuracy | {counts[name][0] / n:.1%} | {counts[name][1] / n:.1%} |")
    print(
        f"| complex, confidently simple (P >= 0.91) | {counts['complex->simple'][0]} | {counts['complex->simple'][1]} |"
    )
    print(f"| classified by an example | - | {counts['by example'][1]} |")
    print(f"| task class or complexity changed | - | {counts['changed'][1]} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--similarity", action="store_true", help="the threshold measurement instead")
    parser.add_argument("--effect", action="store_true", help="what examples change, instead")
    parser.add_argument(
        "--corpus", type=Path, default=CORPUS, help="for --similarity, --effect: *.jsonl here"
    )
    args = parser.parse_args(argv)
    if args.similarity:
        similarity_report(args.corpus)
        return 0
    if args.effect:
        effect_report(args.corpus)
        return 0
    data = rows()
    requests = [view(r) for r in data[::2]]
    candidates = [
        ClassifierExample(
            text=view(r).last_user[:250], task_type=str(r["task"]), complexity=int(r["complexity"])
        )
        for r in data[1::2]
        if view(r).last_user.strip()
    ]
    unique = list({" ".join(e.text.lower().split()): e for e in candidates}.values())
    setups = {n: classifier(unique[:n]) for n in (0, 8, 64)}
    seconds: dict[int, list[float]] = {n: [] for n in setups}
    for clf in setups.values():  # warm the token caches
        for v in requests:
            clf.classify({}, "m", v)
    for _ in range(args.rounds):
        for n, clf in setups.items():
            start = time.perf_counter()
            for v in requests:
                clf.classify({}, "m", v)
            seconds[n].append((time.perf_counter() - start) / len(requests))
    base = statistics.median(seconds[0])
    print(
        f"{len(requests)} requests x {args.rounds} rounds, {platform.python_version()}, {platform.machine()}"
    )
    print("| examples | median us / request | ratio to none |")
    print("|---:|---:|---:|")
    for n, s in seconds.items():
        print(f"| {n} | {statistics.median(s) * 1e6:.0f} | {statistics.median(s) / base:.2f}x |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

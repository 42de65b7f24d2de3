"""Per-request cost of the learned classifier against the keyword (rule) classifier, side by side in one run.

    python -m bench.bench_classifier [--rounds 20]

Both are the router's whole `Classifier.classify` as the sample RoutingPolicy configures it (its keyword rules
first), on the corpus's requests already parsed (`payload.parse_request`, which the router does once for
either). Prints per-request microseconds and the ratio learned / keyword for: typical chat prompts (last user
turn up to 400 characters), all requests (up to long pasted documents; the classifiers read a bounded window),
and the learned model with a cold token cache (every word hashed afresh, as for a prompt in a new language).
Absolute times depend on the machine (shared, noisy); the ratios are the result. The first line times
``sum(range(1000))`` as a yardstick of how loaded the machine was (about 8 us on an idle modern core).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
import timeit
from collections.abc import Callable, Sequence

from zeta_dev.classifier import corpus
from zeta_dev.classifier.evaluate import sample_classifier
from zeta_operator.router import model
from zeta_operator.router.payload import PromptView


def per_request_us(
    classify: Callable[[PromptView], object], views: Sequence[PromptView], rounds: int
) -> float:
    """Median over rounds of the mean time per request."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for view in views:
            classify(view)
        samples.append((time.perf_counter() - started) / len(views) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_classifier", description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    learned_model = model.shipped()
    keyword = sample_classifier(None)
    learned = sample_classifier(learned_model)
    views = [r.view for r in corpus.load()]
    short = [v for v in views if v.last_user_chars <= 400]

    def cold(view: PromptView) -> object:
        learned_model._cache.clear()  # the benchmark measures the cache's worst case
        return learned.classify({}, "any", view)

    reference = min(timeit.repeat("sum(range(1000))", number=1000, repeat=5)) / 1000 * 1e6
    print(
        f"{platform.machine()}, Python {platform.python_version()}, {args.rounds} rounds, median of means; "
        f"machine speed now: sum(range(1000)) takes {reference:.1f} us"
    )
    print(f"{'requests':<40} {'keyword us':>11} {'learned us':>11} {'ratio':>7}")
    for name, subset in (("typical chat (<= 400 chars)", short), ("all corpus requests", views)):
        k = per_request_us(lambda v: keyword.classify({}, "any", v), subset, args.rounds)
        w = per_request_us(lambda v: learned.classify({}, "any", v), subset, args.rounds)
        print(f"{f'{name} ({len(subset)})':<40} {k:>11.1f} {w:>11.1f} {w / k:>6.2f}x")
    k = per_request_us(lambda v: keyword.classify({}, "any", v), short, args.rounds)
    c = per_request_us(cold, short, max(1, args.rounds // 4))
    print(f"{f'typical chat, cold token cache ({len(short)})':<40} {k:>11.1f} {c:>11.1f} {c / k:>6.2f}x")


if __name__ == "__main__":
    main()

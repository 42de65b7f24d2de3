"""Per-request cost of the learned classifier against the keyword (rule) classifier, side by side in one run.

    python -m bench.bench_classifier [--rounds 20]

Both are the router's whole `Classifier.classify` as the sample RoutingPolicy configures it (its keyword rules
first), then the spill gate's floor for the class it chose (`evaluate.sample_decision`: the gate may ask for
the prediction of the ask a follow-up continues), on the corpus's requests already parsed
(`payload.parse_request`, which the router does once for either). Prints per-request microseconds and the
ratio learned / keyword for: typical chat prompts (last user turn up to 400 characters), the held-out split's
typical chat (what docs/classifier.md times; its words fit in the token cache), all requests (up to long
pasted documents; the classifiers read a bounded window), and the learned model with a cold token cache (every
word hashed afresh, as for a prompt in a new language).
A fourth column times the same weights without their word-meaning block (`meaning.WordMeaning`), side by side:
what the block costs. A last line times the typical chat requests that have a context (earlier turns or a system
prompt, `features.context_words`) with it and without it (the same views with those fields blanked): what
reading the context costs.
``--against-code COMMIT`` times another commit's classifier code (``git archive`` of its ``zeta_operator``,
imported under another name) with the same weights file side by side, after checking that both give identical
probabilities and classifications on every corpus request (warm caches, and cold ones on every tenth request).
``--second-opinion N`` instead times the router's optional second opinion (``zeta-router --second-opinion
encoder``) on N held-out typical chat requests the learned model is unsure of (those the router asks the encoder
about): the learned classifier alone against the classifier plus the encoder's answer folded in, the encoder on
one thread as in the router (`second_opinion.SecondOpinion`, here called directly, without the event loop).
Absolute times depend on the machine (shared, noisy); the ratios are the result. The first line times
``sum(range(1000))`` as a yardstick of how loaded the machine was (about 8 us on an idle modern core).
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import importlib
import json
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

from zeta_dev.classifier import corpus
from zeta_dev.classifier.evaluate import cost_us, sample_classifier, sample_decision
from zeta_operator.router import model, second_opinion
from zeta_operator.router.payload import PromptView


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_classifier", description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument(
        "--against",
        type=Path,
        metavar="WEIGHTS",
        help="also time another weights file (e.g. an older commit's) side by side with the shipped one",
    )
    parser.add_argument(
        "--against-code",
        metavar="COMMIT",
        help="also time another commit's classifier code with the same weights, side by side",
    )
    parser.add_argument(
        "--stream",
        type=int,
        metavar="N",
        help="instead: the learned classifier on N typical chat requests drawn with replacement from the corpus "
        "(closer to traffic than a pass over it in order); the first quarter warms the token cache, the rest "
        "are timed; prints the cost per request and how much the process's resident memory grew",
    )
    parser.add_argument(
        "--cache-size",
        type=int,
        default=model.TOKEN_CACHE_SIZE,
        help="with --stream: words each token cache keeps (model.TOKEN_CACHE_SIZE)",
    )
    parser.add_argument(
        "--second-opinion",
        type=int,
        metavar="N",
        help="instead: the second opinion's cost on N held-out typical chat requests the model is unsure of",
    )
    args = parser.parse_args()
    if args.second_opinion:
        second_opinion_cost(args.second_opinion, args.rounds)
        return
    if args.stream:
        stream(args.stream, args.cache_size)
        return
    learned_model = model.shipped()
    keyword = sample_classifier(None)
    learned = sample_classifier(learned_model)
    data = json.loads(gzip.decompress(model.WEIGHTS_FILE.read_bytes()))
    data.pop("meaning", None)
    plain_model = model.LearnedModel(data, source="without the meaning block")
    plain = sample_classifier(plain_model)
    requests = corpus.load()
    views = [r.view for r in requests]
    # The held-out split's typical chat is what docs/classifier.md times: fewer distinct words than the token
    # cache keeps, unlike a pass over the whole corpus (which runs nearly cold, see docs/benchmarks.md).
    held_out = [r.view for r in corpus.select(requests, "test") if r.view.last_user_chars <= 400]
    short = [v for v in views if v.last_user_chars <= 400]
    compared = {
        "typical chat (<= 400 chars)": short,
        "held-out typical chat": held_out,
        "all corpus requests": views,
    }

    keyword_us, learned_us, plain_us = map(sample_decision, (keyword, learned, plain))

    def plain_cold(view: PromptView) -> object:
        plain_model.clear_cache()
        return plain_us(view)

    def cold(view: PromptView) -> object:
        learned_model.clear_cache()  # the benchmark measures the cache's worst case
        return learned_us(view)

    reference = min(timeit.repeat("sum(range(1000))", number=1000, repeat=5)) / 1000 * 1e6
    print(
        f"{platform.machine()}, Python {platform.python_version()}, {args.rounds} rounds, median of means; "
        f"machine speed now: sum(range(1000)) takes {reference:.1f} us"
    )
    print(
        f"{'requests':<44} {'keyword us':>11} {'learned us':>11} {'ratio':>7} "
        f"{'no meaning us':>14} {'learned / no meaning':>21}"
    )
    subsets = (
        ("typical chat (<= 400 chars)", short, (learned_us, plain_us)),
        ("held-out typical chat", held_out, (learned_us, plain_us)),
        ("all corpus requests", views, (learned_us, plain_us)),
        ("typical chat, cold token cache", short, (cold, plain_cold)),
    )
    for name, subset, (with_block, without) in subsets:
        t = cost_us({"keyword": keyword_us, "learned": with_block, "plain": without}, subset, args.rounds)
        label = f"{name} ({len(subset)})"
        print(
            f"{label:<44} {t['keyword']:>11.1f} {t['learned']:>11.1f} {t['learned'] / t['keyword']:>6.2f}x "
            f"{t['plain']:>14.1f} {t['learned'] / t['plain']:>20.2f}x"
        )
    context_cost(
        learned_us,
        [v for v in short if v.previous_user or v.previous_assistant or v.system_prompt],
        args.rounds,
    )
    if args.against_code:
        against_code(learned_us, args.against_code, compared, args.rounds)
    if args.against:
        against(learned_us, args.against, compared, args.rounds)


def second_opinion_cost(n: int, rounds: int) -> None:
    encoder = second_opinion.load_encoder(threads=1)  # as the router runs it: one thread
    head = second_opinion.load_head()
    learned = sample_classifier(model.shipped())
    held_out = [r.view for r in corpus.select(corpus.load(), "test") if r.view.last_user_chars <= 400]
    asked = [v for v in held_out if second_opinion.unsure(learned.classify({}, "any", v), head.ask_below)]
    views = random.Random(11).sample(asked, min(n, len(asked)))

    def alone(view: PromptView) -> object:
        return learned.classify({}, "any", view)

    def with_opinion(view: PromptView) -> object:
        cls = learned.classify({}, "any", view)
        return second_opinion.fold_in(learned, cls, head, second_opinion.ask(encoder, head, view))

    reference = min(timeit.repeat("sum(range(1000))", number=1000, repeat=5)) / 1000 * 1e6
    t = cost_us({"alone": alone, "with": with_opinion}, views, rounds)
    print(
        f"{platform.machine()}, Python {platform.python_version()}, {rounds} rounds, median of means; machine "
        f"speed now: sum(range(1000)) takes {reference:.1f} us\n"
        f"{len(views)} held-out typical chat requests the model is unsure of ({len(asked)} of {len(held_out)} "
        f"held-out typical chat requests are): learned classifier alone {t['alone']:.1f} us, with the second "
        f"opinion {t['with'] / 1000:.1f} ms ({t['with'] / t['alone']:.0f}x)"
    )


def stream(n: int, cache_size: int, seed: int = 7) -> None:
    """See ``--stream``. Resident memory is read from /proc (Linux)."""
    model.TOKEN_CACHE_SIZE = cache_size
    typical = [r.view for r in corpus.load() if r.view.last_user_chars <= 400]
    rng = random.Random(seed)
    views = [rng.choice(typical) for _ in range(n)]
    del typical
    learned_model = model.load(model.WEIGHTS_FILE)
    decide = sample_decision(sample_classifier(learned_model))
    before = _resident_mb()
    warm = n // 4
    for view in views[:warm]:
        decide(view)
    started = time.perf_counter()
    for view in views[warm:]:
        decide(view)
    us = (time.perf_counter() - started) / (n - warm) * 1e6
    words = learned_model.cached_words()
    print(
        f"{platform.machine()}, Python {platform.python_version()}; stream of {n} typical chat requests "
        f"(seed {seed}), token cache {cache_size}: {us:.1f} us a request after {warm} to warm it; largest word "
        f"cache {words}; resident memory +{_resident_mb() - before} MB; sum(range(1000)) "
        f"{min(timeit.repeat('sum(range(1000))', number=1000, repeat=5)) / 1000 * 1e6:.1f} us"
    )


def _resident_mb() -> int:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) // 1024


def against(
    classify: Callable[[PromptView], object], path: Path, subsets: dict[str, list[PromptView]], rounds: int
) -> None:
    """The shipped weights and another weights file, taking turns on the same requests."""
    other_us = sample_decision(sample_classifier(model.load(path)))

    for name, subset in subsets.items():
        t = cost_us({"shipped": classify, "other": other_us}, subset, rounds)
        print(
            f"{name} ({len(subset)}): shipped {t['shipped']:.1f} us, {path.name} {t['other']:.1f} us: "
            f"{t['shipped'] / t['other']:.2f}x"
        )


def against_code(
    classify: Callable[[PromptView], object], commit: str, subsets: dict[str, list[PromptView]], rounds: int
) -> None:
    """The shipped weights through this checkout's code and through ``commit``'s, taking turns on the same
    requests, once both are shown to give identical results."""
    tmp = Path(tempfile.mkdtemp(prefix="zeta-bench-code-"))
    archive = subprocess.run(
        ["git", "archive", commit, "zeta_operator"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    (tmp / "zeta_operator").rename(tmp / "zeta_before")  # its modules import each other relatively
    sys.path.insert(0, str(tmp))
    try:
        _time_against_code(classify, commit, subsets, rounds)
    finally:
        sys.path.remove(str(tmp))
        shutil.rmtree(tmp)


def _time_against_code(
    classify: Callable[[PromptView], object], commit: str, subsets: dict[str, list[PromptView]], rounds: int
) -> None:
    before_model = importlib.import_module("zeta_before.router.model").load(model.WEIGHTS_FILE)
    before_classify = importlib.import_module("zeta_before.router.classify")
    before = sample_classifier(before_model, make=before_classify.Classifier)
    before_us = sample_decision(before, floor=before_classify.spill_floor)
    now_model = model.load(model.WEIGHTS_FILE)
    now = sample_classifier(now_model)
    now_us = sample_decision(now)
    everything = subsets["all corpus requests"]
    for i, view in enumerate(everything):
        if i % 10 == 0:
            now_model.clear_cache()
            before_model.clear_cache()
        a, b = now.classify({}, "any", view), before.classify({}, "any", view)
        if (a.task_type, a.complexity, a.confidence, a.simple_probability) != (
            b.task_type,
            b.complexity,
            b.confidence,
            b.simple_probability,
        ):
            raise SystemExit(f"{commit} classifies differently: {view.last_user[:80]!r}")
        if now_us(view) != before_us(view):
            raise SystemExit(f"{commit} gates differently: {view.last_user[:80]!r}")
    print(f"identical to {commit} on {len(everything)} requests")

    for name, subset in subsets.items():
        t = cost_us({"now": classify, "before": before_us}, subset, rounds)
        print(
            f"{name} ({len(subset)}): this checkout {t['now']:.1f} us, {commit} {t['before']:.1f} us: "
            f"{t['now'] / t['before']:.2f}x"
        )


def context_cost(classify: Callable[[PromptView], object], views: list[PromptView], rounds: int) -> None:
    """The learned classifier on views with a context (earlier turns, a system prompt), and on the same views
    without it, side by side."""
    blanked = [
        dataclasses.replace(v, previous_user="", previous_assistant="", system_prompt="") for v in views
    ]
    samples: dict[str, list[float]] = {"context": [], "blanked": []}
    for _ in range(rounds):
        for name, subset in (("context", views), ("blanked", blanked)):
            started = time.perf_counter()
            for view in subset:
                classify(view)
            samples[name].append((time.perf_counter() - started) / len(subset) * 1e6)
    with_context, without = (statistics.median(samples[k]) for k in ("context", "blanked"))
    print(
        f"typical chat with a context ({len(views)}): learned {with_context:.1f} us with the context, "
        f"{without:.1f} us without it: {with_context / without:.2f}x"
    )


if __name__ == "__main__":
    main()

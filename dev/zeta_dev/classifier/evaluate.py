"""Evaluate the shipped classifier on the held-out test split and write docs/classifier.md:
``python -m zeta_dev.classifier.evaluate``.

Beside it, on the same requests: the keyword (rule) classifier as the sample RoutingPolicy configures it, and
the router as deployed with the sample policy (its keyword rules first, then the learned model). Then the
leave-one-writer-out figures (trained without a writer, tested on all of that writer's requests) and the
per-request cost of both classifiers. This reads the test split; nothing here feeds back into training.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import os
import platform
import re
import statistics
import time
import timeit
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import yaml

from zeta_operator.api.policy import RoutingPolicySpec
from zeta_operator.api.table import TableBackend
from zeta_operator.router import features
from zeta_operator.router import model as runtime
from zeta_operator.router.balancer import ClassRoute
from zeta_operator.router.classify import Classifier, spill_floor
from zeta_operator.router.offline import table_classes
from zeta_operator.router.payload import PromptView

from . import corpus, train
from .corpus import Request

REPO = corpus.CORPUS.parents[1]
DOC = REPO / "docs" / "classifier.md"
SAMPLES = REPO / "manifests" / "samples"
SAMPLE_POLICY = SAMPLES / "routingpolicy.yaml"
TIERS = ("simple", "complex")
T = TypeVar("T")


@dataclass(frozen=True)
class Outcome:
    task: str
    complexity: int
    simple_probability: float
    task_probability: float
    spill_probability: float | None = None
    """What the spill gate compares with offloadConfidence (for a follow-up, also the ask it follows:
    `model.Prediction.spill_simple`); None: ``simple_probability``."""

    @property
    def spill(self) -> float:
        return self.simple_probability if self.spill_probability is None else self.spill_probability


Predictor = Callable[[Request], Outcome]


def learned(m: runtime.LearnedModel) -> Predictor:
    def predict(r: Request) -> Outcome:
        p = m.predict(r.view)
        task = max(p.tasks, key=lambda t: p.tasks[t])
        return Outcome(task, p.complexity_estimate(), p.simple, p.tasks[task], p.spill_simple)

    return predict


def sample_classifier(m: runtime.LearnedModel | None, *, make: type[Classifier] = Classifier) -> Classifier:
    """The router's classifier as the sample RoutingPolicy configures it (``make``: another checkout's
    `Classifier`, for side-by-side timing)."""
    spec = sample_spec()
    return make(spec.classifier, table_classes(spec), default_class=spec.default_class, model=m)


def sample_decision(
    clf: Classifier, *, floor: Callable[..., int] = spill_floor
) -> Callable[[PromptView], int]:
    """What the router decides about a request before it picks a backend, as the sample RoutingPolicy and
    fleet (manifests/samples) configure it: the classification by ``clf``, then the spill gate's floor
    (`classify.spill_floor`: the class's protected ceiling over the sample ModelBackends, the policy's
    offloadConfidence; ``floor``: another checkout's `spill_floor`). Timed as one, because the classification
    leaves to the gate what only the gate may need (the prediction of the ask a follow-up continues)."""
    spec = sample_spec()
    protected = sample_protected_ceilings(spec)
    confidence = spec.classifier.offload_confidence

    def decide(view: PromptView) -> int:
        cls = clf.classify({}, "any", view)
        return floor(cls, protected_ceiling=protected[cls.task_class.name], offload_confidence=confidence)

    return decide


def sample_protected_ceilings(spec: RoutingPolicySpec) -> dict[str, int]:
    """Per class of ``spec``, the ceiling below which a backend of the sample fleet (manifests/samples) is a
    spill down (`balancer.ClassRoute.protected_ceiling`)."""
    backends = []
    for path in sorted(SAMPLES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("kind") == "ModelBackend":
            caps = doc["spec"]["capabilities"]
            backends.append(
                TableBackend(
                    name=doc["metadata"]["name"],
                    model=doc["spec"]["model"],
                    tasks=caps["tasks"],
                    max_complexity=caps["maxComplexity"],
                    context_window=caps["contextWindow"],
                )
            )
    return {c.name: ClassRoute.build(c, backends).protected_ceiling for c in table_classes(spec)}


def sample_spec() -> RoutingPolicySpec:
    return RoutingPolicySpec.model_validate(yaml.safe_load(SAMPLE_POLICY.read_text())["spec"])


def through(clf: Classifier) -> Predictor:
    def predict(r: Request) -> Outcome:
        c = clf.classify({}, "any", r.view)
        return Outcome(c.task_type, c.complexity, c.simple_probability, c.confidence, c.spill_probability)

    return predict


def tier(complexity: int) -> str:
    return "simple" if complexity <= runtime.SIMPLE_MAX else "complex"


@dataclass
class Scores:
    n: int
    task: float
    tier: float
    both: float
    complex_to_simple: float
    complex_to_simple_gated: float | None
    complex_n: int
    simple_gated: float | None
    """Share of the truly simple requests the gate lets spill (estimate simple for the keyword classifier)."""


def score(requests: Sequence[Request], outcomes: Sequence[Outcome], gate: float | None) -> Scores:
    n = len(requests)
    task_ok = sum(o.task == r.task for r, o in zip(requests, outcomes, strict=True))
    tier_ok = sum(tier(o.complexity) == tier(r.complexity) for r, o in zip(requests, outcomes, strict=True))
    both = sum(
        o.task == r.task and tier(o.complexity) == tier(r.complexity)
        for r, o in zip(requests, outcomes, strict=True)
    )
    complex_ = [(r, o) for r, o in zip(requests, outcomes, strict=True) if not r.simple]
    down = sum(o.complexity <= runtime.SIMPLE_MAX for _, o in complex_)
    gated = None if gate is None else sum(o.spill >= gate for _, o in complex_)
    simple = [o for r, o in zip(requests, outcomes, strict=True) if r.simple]
    if gate is None:
        simple_gated = sum(o.complexity <= runtime.SIMPLE_MAX for o in simple)
    else:
        simple_gated = sum(o.spill >= gate for o in simple)
    k = max(1, len(complex_))
    return Scores(
        n,
        task_ok / n,
        tier_ok / n,
        both / n,
        down / k,
        None if gated is None else gated / k,
        len(complex_),
        simple_gated / max(1, len(simple)),
    )


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def confusion(
    rows: Sequence[str], pairs: Sequence[tuple[str, str]], header: str = "true \\ predicted"
) -> list[str]:
    counts = Counter(pairs)
    lines = [f"| {header} | " + " | ".join(rows) + " | recall |", "|---" * (len(rows) + 2) + "|"]
    for t in rows:
        total = sum(counts[(t, p)] for p in rows)
        cells = " | ".join(str(counts[(t, p)]) for p in rows)
        lines.append(f"| **{t}** | {cells} | {pct(counts[(t, t)] / total if total else None)} |")
    precision = []
    for p in rows:
        total = sum(counts[(t, p)] for t in rows)
        precision.append(pct(counts[(p, p)] / total if total else None))
    lines.append("| precision | " + " | ".join(precision) + " | |")
    return lines


def reliability(probabilities: Sequence[float], correct: Sequence[bool]) -> list[str]:
    edges = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0001)
    lines = ["| predicted | requests | mean predicted | observed |", "|---|---:|---:|---:|"]
    for lo, hi in itertools.pairwise(edges):
        picked = [(p, c) for p, c in zip(probabilities, correct, strict=True) if lo <= p < hi]
        if not picked:
            continue
        mean = statistics.fmean(p for p, _ in picked)
        observed = sum(c for _, c in picked) / len(picked)
        lines.append(f"| {lo:.2f}-{min(hi, 1.0):.2f} | {len(picked)} | {mean:.3f} | {observed:.3f} |")
    return lines


def cost_us(
    predictors: dict[str, Callable[[T], object]], requests: Sequence[T], rounds: int = 7
) -> dict[str, float]:
    """Per predictor, the median over rounds of the mean time per request (views parsed already, as in the
    router). The predictors take turns within each round, so a busy spell of the shared machine hits all."""
    samples: dict[str, list[float]] = {name: [] for name in predictors}
    for _ in range(rounds):
        for name, predict in predictors.items():
            started = time.perf_counter()
            for r in requests:
                predict(r)
            samples[name].append((time.perf_counter() - started) / len(requests) * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def yardstick_us() -> float:
    """How fast the machine is right now: sum(range(1000)) (about 8 us on an idle modern core)."""
    return min(timeit.repeat("sum(range(1000))", number=1000, repeat=5)) / 1000 * 1e6


def leave_one_writer_out(requests: Sequence[Request]) -> list[str]:
    lines = [
        "| held-out writer | trained on | tested on | task type | tier | both | complex labelled simple "
        "(P >= 0.5) | complex spilled at its offloadConfidence |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for writer, m in _models_without_each_writer(requests):
        others = [r for r in requests if r.source != writer]
        tested = [r for r in requests if r.source == writer]
        s = score(tested, [learned(m)(r) for r in tested], m.offload_confidence)
        trained = sum(r.split == "train" for r in others)
        lines.append(
            f"| {writer} | {trained} | {len(tested)} | {pct(s.task)} | {pct(s.tier)} | {pct(s.both)} | "
            f"{pct(s.complex_to_simple)} | {pct(s.complex_to_simple_gated)} (at {m.offload_confidence}) |"
        )
    return lines


def _models_without_each_writer(requests: Sequence[Request]) -> Iterator[tuple[str, runtime.LearnedModel]]:
    """For each hand writer, in order, the model `train.build` makes from every other request, made faster:
    the train split's features are computed once (a request's row does not depend on the others); each fit
    starts from the whole train split's (`train.start_from`: the same optimum in about a third of the Newton
    steps, so the weights agree with `train.build`'s to the solver's tolerance, not always to the byte); and
    every fit's heads go to one pool, so its workers go on to the next writer's heads while a slow head
    finishes (one writer ahead, to bound the memory)."""
    writers = sorted({r.source for r in requests if re.fullmatch(r"w\d+", r.source)}, key=corpus.source_order)
    training = corpus.select(requests, "train")
    rows = train.design([r.view for r in training])
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(os.cpu_count() or 1, mp_context=context) as pool:
        whole = train.heads_of(rows, training, train.HYPER)
        fits = [f.result() for f in train.submit_heads(pool, rows, whole)]
        near = [(fit, head.columns) for fit, head in zip(fits, whole, strict=True)]

        def start(writer: str) -> tuple[str, int, tuple[train.Head, ...], list[Future[train.Fitted]]]:
            keep = [i for i, r in enumerate(training) if r.source != writer]
            x = rows[keep]
            heads = train.heads_of(x, [training[i] for i in keep], train.HYPER)
            return writer, x.shape[1], heads, train.submit_heads(pool, x, heads, near)

        started = [start(writers[0])] if writers else []
        for n in range(len(writers)):
            if n + 1 < len(writers):
                started.append(start(writers[n + 1]))
            writer, width, heads, futures = started.pop(0)
            fitted = train.assemble(width, heads, [f.result() for f in futures])
            others = [r for r in requests if r.source != writer]
            yield writer, runtime.parse(_gz(train.finish(others, fitted)), source=f"without {writer}")


LENGTHS = (
    (0, 100, "under 100"),
    (100, 400, "100-399"),
    (400, 1500, "400-1,499"),
    (1500, math.inf, "1,500 and over"),
)
"""Buckets of the last user turn's characters: the corpus brief's short and long ends, and the 400 of "typical
chat" in the cost table."""


def by_length(requests: Sequence[Request], outcomes: Sequence[Outcome], gate: float) -> list[str]:
    """The learned model's figures per length of the last user turn: the confidence gate's weak spot is short
    asks whose difficulty is only in what they ask (dev/corpus/README.md, the w17-w23 section)."""
    lines = [
        "| last user turn (characters) | requests | complex | task type | tier | complex labelled simple "
        "(P >= 0.5) | complex spilled at offloadConfidence | simple allowed to spill |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for low, high, label in LENGTHS:
        rows = [
            (r, o) for r, o in zip(requests, outcomes, strict=True) if low <= r.view.last_user_chars < high
        ]
        if not rows:
            continue
        s = score([r for r, _ in rows], [o for _, o in rows], gate)
        lines.append(
            f"| {label} | {s.n} | {s.complex_n} | {pct(s.task)} | {pct(s.tier)} | {pct(s.complex_to_simple)} | "
            f"{pct(s.complex_to_simple_gated)} | {pct(s.simple_gated)} |"
        )
    return lines


def _gz(payload: bytes) -> bytes:
    import gzip

    return gzip.compress(payload, mtime=0)


LOWO_HEADING = "## Unseen authors: leave one writer out"
STALE_NOTE = "**Not recomputed for the shipped weights:**"


def report(requests: Sequence[Request], *, lowo: bool, previous: str = "") -> str:
    """docs/classifier.md. Without ``lowo``, the leave-one-writer-out section of ``previous`` (the report this
    one replaces) is kept if that report was written for weights of the same corpus (its fingerprint), under a
    note if it was computed with other training settings (`kept_section`); otherwise it is left out."""
    m = runtime.load()
    test = corpus.select(requests, "test")
    split_counts = Counter(r.split for r in requests)
    predictors = {
        "learned model (shipped)": (learned(m), m.offload_confidence),
        "keyword classifier (sample policy: its rules, then the built-in vocabulary)": (
            through(sample_classifier(None)),
            None,
        ),
        "router with the sample policy (its rules, then the learned model)": (
            through(sample_classifier(m)),
            m.offload_confidence,
        ),
    }
    outcomes = {name: [p(r) for r in test] for name, (p, _) in predictors.items()}
    scores = {name: score(test, outcomes[name], gate) for name, (_, gate) in predictors.items()}
    learned_out = outcomes["learned model (shipped)"]
    keyword_decides = sample_decision(sample_classifier(None))
    learned_decides = sample_decision(sample_classifier(m))
    timed: dict[str, Callable[[Request], object]] = {
        "keyword": lambda r: keyword_decides(r.view),
        "learned": lambda r: learned_decides(r.view),
    }
    short = [r for r in test if r.view.last_user_chars <= 400]
    yardstick = yardstick_us()
    costs = cost_us(timed, test)
    short_costs = cost_us(timed, short)
    out = [
        "# Request classifier: held-out evaluation",
        "",
        "Written by `python -m zeta_dev.classifier.evaluate` (do not edit by hand). Corpus: "
        f"{len(requests)} labelled requests (dev/corpus/README.md), split by group hash into "
        f"{split_counts['train']} train / {split_counts['calibration']} calibration / {split_counts['test']} "
        f"held-out test. Weights: `zeta_operator/router/classifier.json.gz` (corpus fingerprint "
        f"`{m.corpus}`), temperatures task {m.task_temperature}, complexity {m.complexity_temperature}; "
        f"default offloadConfidence {m.offload_confidence}. Tiers: simple = complexity 1-2, complex = 3-5. "
        "Nothing was tuned on the test split: hyperparameters by grouped 5-fold cross-validation on the train "
        "split (`python -m zeta_dev.classifier.select`), temperatures and offloadConfidence on the "
        "calibration split (offloadConfidence: the lowest at which that split shows, at "
        f"{train.OFFLOAD_EVIDENCE:.0%} confidence, that at most {train.OFFLOAD_COMPLEX_RATE:.0%} of complex "
        "requests pass).",
        "",
        f"## Held-out test split ({len(test)} requests, {scores['learned model (shipped)'].complex_n} complex)",
        "",
        "| classifier | task type | complexity tier | both | complex labelled simple | complex spilled at "
        "offloadConfidence | simple allowed to spill |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in scores.items():
        out.append(
            f"| {name} | {pct(s.task)} | {pct(s.tier)} | {pct(s.both)} | {pct(s.complex_to_simple)} | "
            f"{pct(s.complex_to_simple_gated)} | {pct(s.simple_gated)} |"
        )
    out += [
        "",
        'Targets (issue 9): task type >= 95%, tier >= 90%, complex-to-simple <= 1%. "Complex labelled '
        'simple": complex requests whose estimate is simple (P(simple) >= 0.5), i.e. that a policy without '
        'the confidence gate could spill. "Spilled at offloadConfidence": those whose P(simple) reaches the '
        "default offloadConfidence (for a follow-up, the ask it follows must reach it too), the only ones the "
        'router lets go to a smaller model. "Simple allowed to '
        'spill": the share of the truly simple requests that pass the gate (what offloading can still move). '
        "The keyword classifier has no probability, so every request it labels simple may spill.",
        "",
        "The learned model by the length of the last user turn (same requests, default offloadConfidence):",
        "",
        *by_length(test, learned_out, m.offload_confidence),
        "",
        "Cost per classification (the router's whole `Classifier.classify` and the spill gate's floor for the "
        "class it chose, as the sample policy and fleet configure them, request already parsed), measured "
        f"side by side in one run on {platform.machine()} / Python {platform.python_version()} "
        f"({platform.node() or 'unknown host'}, 2 shared cores; machine speed at the time: sum(range(1000)) "
        f"took {yardstick:.1f} us, about 8 us on an idle modern core):",
        "",
        "| requests | keyword classifier | learned classifier | ratio |",
        "|---|---:|---:|---:|",
        f"| held-out split ({len(test)}) | {costs['keyword']:.1f} us | {costs['learned']:.1f} us | "
        f"{costs['learned'] / costs['keyword']:.2f}x |",
        f"| last user turn <= 400 characters ({len(short)}) | {short_costs['keyword']:.1f} us | "
        f"{short_costs['learned']:.1f} us | {short_costs['learned'] / short_costs['keyword']:.2f}x |",
        "",
        "See docs/benchmarks.md (`python -m bench.bench_classifier`) for the benchmark.",
        "",
        "## Learned model: task type",
        "",
        *confusion(corpus.TASKS, [(r.task, o.task) for r, o in zip(test, learned_out, strict=True)]),
        "",
        "## Learned model: complexity tier",
        "",
        *confusion(
            TIERS, [(tier(r.complexity), tier(o.complexity)) for r, o in zip(test, learned_out, strict=True)]
        ),
        "",
        "## Learned model: complexity level",
        "",
        *confusion(
            ["1", "2", "3", "4", "5"],
            [(str(r.complexity), str(o.complexity)) for r, o in zip(test, learned_out, strict=True)],
        ),
        "",
        "## Keyword classifier: task type (same requests)",
        "",
        *confusion(
            corpus.TASKS,
            [(r.task, o.task) for r, o in zip(test, outcomes[next(iter(list(outcomes)[1:]))], strict=True)],
        ),
        "",
        "## Calibration (held-out split)",
        "",
        "P(simple), against the share that is truly simple (bins of the probability the gate compares with "
        "offloadConfidence; for a follow-up the gate also compares the ask it follows):",
        "",
        *reliability([o.simple_probability for o in learned_out], [r.simple for r in test]),
        "",
        "Task type: the probability of the predicted type against the share that is right:",
        "",
        *reliability(
            [o.task_probability for o in learned_out],
            [o.task == r.task for r, o in zip(test, learned_out, strict=True)],
        ),
        "",
    ]
    if not lowo:
        return "\n".join(out + kept_section(previous, m.corpus))
    out += [
        LOWO_HEADING,
        "",
        "Trained (train split) and calibrated (calibration split) without one writer's requests, tested on "
        "all of that writer's requests: the honest figure for prompts written by someone the model has "
        "never read. (Each fit starts from the whole train split's: the same optimum, to the solver's "
        "tolerance, in fewer steps; `train.start_from`.)",
        "",
        training_settings(),
        "",
        *leave_one_writer_out(requests),
        "",
    ]
    return "\n".join(out)


def training_label() -> str:
    """The training settings the shipped weights are made with: hyperparameters and features version."""
    return f"`{train.HYPER!r}`, features `{features.FEATURES_VERSION}`"


def training_settings() -> str:
    """The line that says which training the leave-one-writer-out figures are of (`kept_section` reads it)."""
    return f"Training: {training_label()}."


def kept_section(previous: str, fingerprint: str) -> list[str]:
    """The leave-one-writer-out section of ``previous`` if its header names weights of corpus ``fingerprint``;
    if the section was computed with other training settings (`training_settings`), it is kept under a note
    that says so, since rerunning it takes hours."""
    header = previous.split("\n\n", 2)[1] if previous.count("\n\n") >= 2 else ""
    if f"(corpus fingerprint `{fingerprint}`)" not in header or LOWO_HEADING not in previous:
        return []
    section = previous[previous.index(LOWO_HEADING) :].rstrip("\n").split("\n")
    if section[2:3] and section[2].startswith(STALE_NOTE):  # an earlier keep's note: judged afresh below
        del section[1:3]
    if training_settings() in section:
        return [*section, ""]
    note = (
        f"{STALE_NOTE} they are of weights trained on the same corpus with earlier training settings, not "
        f"with these ({training_label()}); `python -m "
        "zeta_dev.classifier.evaluate` recomputes them (one to two hours on 2 cores)."
    )
    return [section[0], "", note, *section[1:], ""]


def unseen(requests: Sequence[Request], sources: Sequence[str], m: runtime.LearnedModel) -> str:
    """A model's figures on every request of sources it was not trained on (each, then all together)."""
    lines = [
        "| source | requests | task type | tier | both | complex labelled simple (P >= 0.5) "
        "| complex spilled at offloadConfidence | simple allowed to spill |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    everything = [r for r in requests if r.source in sources]
    predict = learned(m)
    outcomes = {r.id: predict(r) for r in everything}
    for group in [*([s] for s in sources), *([list(sources)] if len(sources) > 1 else [])]:
        tested = [r for r in everything if r.source in group]
        s = score(tested, [outcomes[r.id] for r in tested], m.offload_confidence)
        lines.append(
            f"| {' + '.join(group)} | {s.n} | {pct(s.task)} | {pct(s.tier)} | {pct(s.both)} | "
            f"{pct(s.complex_to_simple)} | {pct(s.complex_to_simple_gated)} of {s.complex_n} (at "
            f"{m.offload_confidence}) | {pct(s.simple_gated)} |"
        )
    s = score(everything, [through(sample_classifier(None))(r) for r in everything], None)
    lines.append(
        f"| all, keyword classifier (sample policy) | {s.n} | {pct(s.task)} | {pct(s.tier)} | {pct(s.both)} | "
        f"{pct(s.complex_to_simple)} | - | {pct(s.simple_gated)} |"
    )
    lines += ["", f"All of {' + '.join(sources)} by the length of the last user turn:", ""]
    lines += by_length(everything, [outcomes[r.id] for r in everything], m.offload_confidence)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.evaluate", description=__doc__)
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument(
        "--no-lowo",
        action="store_true",
        help="skip the leave-one-writer-out retraining (the report keeps the section it replaces if that was "
        "written for weights of the same corpus, under a note if their training settings differ)",
    )
    parser.add_argument(
        "--unseen",
        metavar="SOURCE,...",
        help="instead: score a weights file (--weights) on all requests of these sources, e.g. new writers an "
        "older model never read; prints, writes nothing",
    )
    parser.add_argument("--weights", type=Path, default=runtime.WEIGHTS_FILE)
    parser.add_argument(
        "--corpus",
        type=Path,
        default=corpus.CORPUS,
        help="with --unseen: where their files are (e.g. dev/corpus/incoming, written but not merged)",
    )
    args = parser.parse_args(argv)
    if args.unseen:
        print(unseen(corpus.load(args.corpus), args.unseen.split(","), runtime.load(args.weights)))
        return
    previous = args.out.read_text() if args.out.exists() else ""
    args.out.write_text(report(corpus.load(), lowo=not args.no_lowo, previous=previous))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

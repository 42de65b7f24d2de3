"""Choose the hyperparameters by grouped cross-validation on the train split only:
``python -m zeta_dev.classifier.select [--folds 5] [--writers | --curve]``.

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
from .train import HYPER, LEVELS, Hyper, design, fit_heads

CANDIDATES = (
    *(Hyper(task_c=c, complexity_c=c) for c in (1.0, 4.0, 16.0, 64.0)),
    Hyper(task_c=4.0, complexity_c=2.0),
    Hyper(task_c=4.0, complexity_c=2.0, complexity_balanced=True),
)
"""Both heads share the candidate value per run (each head is scored separately, so each can take its best);
then the shipped C values with and without class weights on the complexity head."""
GATE_COMPLEX_RATE = 0.01


def fold_of(group: str, folds: int) -> int:
    return int.from_bytes(hashlib.sha256(b"fold:" + group.encode()).digest()[:4], "big") % folds


def out_of_fold(
    requests: Sequence[Request], hyper: Hyper, folds: int, share: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold task and complexity probabilities (float weights, temperature 1). ``share``: fit each fold
    on that share of the other folds' groups only (a learning curve; always the same groups for a share)."""
    x = design([r.view for r in requests])
    k = len(corpus.TASKS)
    task_p = np.zeros((len(requests), k))
    level_p = np.zeros((len(requests), len(LEVELS)))
    fold = np.array([fold_of(r.group, folds) for r in requests])
    for f in range(folds):
        train = [r for r, g in zip(requests, fold, strict=True) if g != f and _in_share(r.group, share)]
        w, b = fit_heads(train, hyper)
        z = x[fold == f] @ w.T + b
        task_p[fold == f] = _softmax(z[:, :k])
        level_p[fold == f] = _softmax(z[:, k:])
    return task_p, level_p


def _in_share(group: str, share: float) -> bool:
    point = int.from_bytes(hashlib.sha256(b"curve:" + group.encode()).digest()[:4], "big")
    return point < share * 2**32


CURVE_SHARES = (0.25, 0.5, 0.75, 1.0)
"""``--curve``: the shares of the train groups each fold is fitted on, for the shipped `HYPER`."""

WRITERS = ("w1", "w2", "w3")


def leave_one_writer_out(requests: Sequence[Request], hyper: Hyper) -> tuple[np.ndarray, np.ndarray]:
    """Each hand writer's train-split requests, predicted by a model fitted on the others' (float weights,
    temperature 1): how the candidate does on a writer it has never read. Other sources are never held out."""
    x = design([r.view for r in requests])
    k = len(corpus.TASKS)
    task_p = np.full((len(requests), k), 1.0 / k)
    level_p = np.full((len(requests), len(LEVELS)), 1.0 / len(LEVELS))
    for writer in WRITERS:
        held = np.array([r.source == writer for r in requests])
        w, b = fit_heads([r for r, h in zip(requests, held, strict=True) if not h], hyper)
        z = x[held] @ w.T + b
        task_p[held] = _softmax(z[:, :k])
        level_p[held] = _softmax(z[:, k:])
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
        "simple passing the gate": simple_passing(p_simple, simple),
        "task log-loss": float(-np.log(task_p[np.arange(n), task]).mean()),
        "level log-loss": float(-np.log(level_p[np.arange(n), [r.complexity - 1 for r in requests]]).mean()),
    }


def simple_passing(p_simple: np.ndarray, simple: np.ndarray) -> float:
    """The share of simple requests whose P(simple) clears the lowest threshold that lets at most
    GATE_COMPLEX_RATE of the complex ones through (out of fold, before calibration: to compare candidates,
    not the figure the router gets)."""
    ranked = np.sort(p_simple[~simple])[::-1]
    threshold = ranked[int(GATE_COMPLEX_RATE * len(ranked))]
    return float((p_simple[simple] > threshold).mean())


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.select", description=__doc__)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument(
        "--writers", action="store_true", help="leave one hand writer out (train split only) instead of folds"
    )
    parser.add_argument(
        "--curve", action="store_true", help="learning curve of the shipped hyperparameters instead"
    )
    args = parser.parse_args(argv)
    train = corpus.select(corpus.load(), "train")
    if args.curve:
        print(
            f"{len(train)} train requests, {args.folds} folds by group, each fitted on a share of its groups"
        )
        for share in CURVE_SHARES:
            s = scores(train, *out_of_fold(train, HYPER, args.folds, share))
            print(f"share {share:.2f}", " ".join(f"{k} {v:.3f}" for k, v in s.items()), flush=True)
        return
    how = "leave one writer out" if args.writers else f"{args.folds} folds by group"
    print(f"{len(train)} train requests, {how}")
    for hyper in CANDIDATES:
        if args.writers:
            task_p, level_p = leave_one_writer_out(train, hyper)
            writers = [r for r in train if r.source in WRITERS]
            mask = np.array([r.source in WRITERS for r in train])
            s = scores(writers, task_p[mask], level_p[mask])
        else:
            s = scores(train, *out_of_fold(train, hyper, args.folds))
        print(hyper, " ".join(f"{k} {v:.3f}" for k, v in s.items()), flush=True)


if __name__ == "__main__":
    main()

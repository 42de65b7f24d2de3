"""Does a distilled word-vector block help the classifier? Grouped cross-validation on the train split only:
``python -m zeta_dev.classifier.embedding_cv TABLE [TABLE ...] [--folds 5] [--variants NAME,NAME]``.

For each table (``python -m zeta_dev.classifier.distil --dims D --out TABLE``), the current features
(`train.design` without the word-meaning blocks) are compared, out of fold with the folds of `select`, with
the current features plus dense blocks: the mean vector of the known words of the last user turn, and
optionally the same over the words of its instruction (`features.instruction`); ``segment``: a word outside
the table counts as the mean of its known `pieces`; ``unseen``: the held-out fold's words are looked up only
if an unseen prompt could find them (see `Variant`). Each block is divided by the root mean square of its
norm over the train split, then multiplied by ``alpha``, so that its size is comparable to the text block's
(norm 1) under the same L2 penalty. Prints the figures of `select.scores` per variant; the results and the
choice are in dev/corpus/README.md.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix, hstack

from zeta_operator.router import features
from zeta_operator.router.meaning import pieces

from . import corpus, distil
from .corpus import Request
from .select import _softmax, fold_of, scores
from .train import HYPER, LEVELS, Head, _ask_shape_columns, column_scale, design, fit_matrix


@dataclass(frozen=True)
class Variant:
    name: str
    turn: bool = True
    instruction: bool = False
    alpha: float = 1.0
    task_only: bool = False
    """The blocks feed the task head only (else both heads)."""
    segment: bool = False
    """An unknown word counts as the mean of its greedy known pieces (`pieces`)."""
    unseen: bool = False
    """Per fold, the held-out requests' words are known only if the teacher's vocabulary, the calibration split or the
    fold's training requests have them: the coverage an unseen prompt gets (the table itself holds every
    train word, so without this the held-out fold's rare words are all known)."""


VARIANTS = (
    Variant("turn"),
    Variant("turn-x2", alpha=2.0),
    Variant("turn+instruction", instruction=True),
    Variant("turn-task-head-only", task_only=True),
    Variant("turn-unseen", unseen=True),
    Variant("turn+instruction-unseen", instruction=True, unseen=True),
    Variant("turn-segmented-unseen", segment=True, unseen=True),
    Variant("turn+instruction-segmented-unseen", instruction=True, segment=True, unseen=True),
)


def mean_vectors(
    texts: Sequence[list[str]], index: dict[str, int], vectors: np.ndarray, *, segment: bool = False
) -> np.ndarray:
    """Per text, the mean vector of its known words; ``segment``: an unknown word counts as the mean of
    its `pieces` when it has any."""
    out = np.zeros((len(texts), vectors.shape[1]))
    for i, words in enumerate(texts):
        rows = [vectors[index[w]] for w in words if w in index]
        if segment:
            for w in words:
                found = pieces(w, index) if w not in index else []
                if found:
                    rows.append(vectors[[index[p] for p in found]].mean(axis=0))
        if rows:
            out[i] = np.mean(rows, axis=0)
    return out


def blocks(
    requests: Sequence[Request], table: Path, variant: Variant, allowed: set[str] | None = None
) -> tuple[np.ndarray, float]:
    """The dense columns of ``variant`` and the share of turn words (with repeats over requests) known;
    ``allowed``: the words the table may be used for (default all)."""
    words, vectors = distil.read_table(table)
    index = {w: i for i, w in enumerate(words) if allowed is None or w in allowed}
    turns = [features.split_turn(r.view.last_user) for r in requests]
    known = sum(w in index for t in turns for w in t.words) / max(1, sum(len(t.words) for t in turns))
    parts = []
    if variant.turn:
        parts.append(mean_vectors([t.words for t in turns], index, vectors, segment=variant.segment))
    if variant.instruction:
        parts.append(mean_vectors([t.instruction for t in turns], index, vectors, segment=variant.segment))
    scaled = [variant.alpha * p / np.sqrt((p**2).sum(axis=1).mean()) for p in parts]
    return np.hstack(scaled), known


def fit(
    x: csr_matrix, requests: Sequence[Request], extra: int, task_only: bool
) -> tuple[np.ndarray, np.ndarray]:
    """`train.fit_heads` over a given matrix whose last ``extra`` columns are the dense blocks."""
    used = np.unique(x.indices)
    dense = np.arange(x.shape[1] - extra, x.shape[1])
    used = np.union1d(used, dense)
    task_columns = used[~np.isin(used, _ask_shape_columns())]
    complexity_columns = used[~np.isin(used, dense)] if task_only else used
    heads = (
        Head(
            corpus.TASKS,
            [r.task for r in requests],
            HYPER.task_c,
            False,
            task_columns,
            column_scale(x, task_columns, HYPER.task_idf_power),
        ),
        Head(
            LEVELS,
            [r.complexity for r in requests],
            HYPER.complexity_c,
            HYPER.complexity_balanced,
            complexity_columns,
        ),
    )
    return fit_matrix(x, heads)


def out_of_fold(
    requests: Sequence[Request],
    x: csr_matrix,
    extra: int,
    task_only: bool,
    folds: int,
    x_of_fold: Callable[[np.ndarray], csr_matrix] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``x_of_fold``: the design for a fold given its training mask, when it depends on the fold."""
    k = len(corpus.TASKS)
    task_p = np.zeros((len(requests), k))
    level_p = np.zeros((len(requests), len(LEVELS)))
    fold = np.array([fold_of(r.group, folds) for r in requests])
    for f in range(folds):
        inside = fold != f
        if x_of_fold is not None:
            x = x_of_fold(inside)
        w, b = fit(x[inside], [r for r, i in zip(requests, inside, strict=True) if i], extra, task_only)
        z = x[~inside] @ w.T + b
        task_p[~inside] = _softmax(z[:, :k])
        level_p[~inside] = _softmax(z[:, k:])
    return task_p, level_p


def _words(r: Request) -> list[str]:
    return features.split_turn(r.view.last_user).words


def _known(requests: Sequence[Request], mask: np.ndarray, vocabulary: set[str]) -> float:
    words = [w for r, m in zip(requests, mask, strict=True) if m for w in _words(r)]
    return sum(w in vocabulary for w in words) / max(1, len(words))


def report(name: str, requests: Sequence[Request], task_p: np.ndarray, level_p: np.ndarray) -> None:
    s = scores(requests, task_p, level_p)
    print(f"{name:45s} " + " ".join(f"{k} {v:.3f}" for k, v in s.items()), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.embedding_cv", description=__doc__)
    parser.add_argument("tables", type=Path, nargs="+")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS))
    parser.add_argument("--no-baseline", action="store_true", help="skip the current features' run")
    args = parser.parse_args(argv)
    requests = corpus.load()
    train = corpus.select(requests, "train")
    # Words an unseen prompt finds in the table: the teacher vocabulary's and the calibration split's (and, per fold, those
    # of the fold's training requests).
    general = set(distil._teacher_words()) | {
        w for r in corpus.select(requests, "calibration") for w in features.split_turn(r.view.last_user).words
    }
    print(f"{len(train)} train requests, {args.folds} folds by group")
    base = design([r.view for r in train], with_meaning=False)
    if not args.no_baseline:
        report("current features", train, *out_of_fold(train, base, 0, False, args.folds))
    wanted = args.variants.split(",")
    for table in args.tables:
        for variant in (v for v in VARIANTS if v.name in wanted):
            dense, known = blocks(train, table, variant)
            x = hstack([base, csr_matrix(dense)]).tocsr()
            x_of_fold = None
            if variant.unseen:

                def x_of_fold(
                    inside: np.ndarray, table: Path = table, variant: Variant = variant
                ) -> csr_matrix:
                    seen = {w for r, i in zip(train, inside, strict=True) if i for w in _words(r)}
                    dense, _ = blocks(train, table, variant, general | seen)
                    print(
                        f"  fold: held-out words known {_known(train, ~inside, general | seen):.1%}",
                        flush=True,
                    )
                    return hstack([base, csr_matrix(dense)]).tocsr()

            p = out_of_fold(train, x, dense.shape[1], variant.task_only, args.folds, x_of_fold)
            report(f"{table.name} {variant.name} (known {known:.1%})", train, *p)


if __name__ == "__main__":
    main()

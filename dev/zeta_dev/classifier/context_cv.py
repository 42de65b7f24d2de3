"""Does the conversation's context help the classifier on follow-ups? Grouped cross-validation on the train split
only: ``python -m zeta_dev.classifier.context_cv [--folds 5] [--variants NAME,NAME]``.

The current model reads the last user turn (and the structure of the request). A short follow-up ("yes please
show me", "now do it in Rust", "shorter") says little of what the conversation is about. Each variant adds to
the current features (`train.design`) a block of the turns before it: the words of the previous user turn
and/or of the assistant turn just before the last user turn, or of the system prompt, each cut to
``CONTEXT_CHARS`` characters, hashed in a namespace of their own into the same buckets as the text, normalised
by their own count (1/sqrt) and multiplied by ``alpha``; optionally only when the last turn is short; or the
word-meaning mean vector (`meaning.word_vector`) of those turns. Prints, per variant, the figures of
`select.scores` over all train requests, over the multi-turn ones (some turn before the last user turn that is
not a system prompt) and over the single-turn ones, with the folds of `select`. Results and the choice are in
dev/corpus/README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix, hstack

from zeta_operator.router import features
from zeta_operator.router.payload import SYSTEM_ROLES

from . import corpus
from .corpus import Request
from .embedding_cv import out_of_fold
from .meaning import BLOCK_SCALE, table, word_vector
from .select import scores
from .train import design

CONTEXT_CHARS = 300


@dataclass(frozen=True)
class Context:
    previous_user: str
    previous_assistant: str
    system: str


@dataclass(frozen=True)
class Variant:
    name: str
    user: bool = False
    assistant: bool = False
    system: bool = False
    alpha: float = 1.0
    short_only: int = 0
    """Only when the last user turn has at most this many characters (0: always)."""
    one_block: bool = False
    """The previous user and assistant turns' words share one namespace and one norm."""
    meaning: bool = False
    """The word-meaning mean vector of the context turns instead of hashed words."""
    symbols: bool = False
    """Symbol runs (```, ();) of the context turns too."""


VARIANTS = (
    Variant("user", user=True),
    Variant("assistant", assistant=True),
    Variant("user+assistant", user=True, assistant=True),
    Variant("user+assistant-one-block", user=True, assistant=True, one_block=True),
    Variant("user+assistant-x0.5", user=True, assistant=True, alpha=0.5),
    Variant("user+assistant-x2", user=True, assistant=True, alpha=2.0),
    Variant("user+assistant-short80", user=True, assistant=True, short_only=80),
    Variant("user+assistant-short200", user=True, assistant=True, short_only=200),
    Variant("user+assistant+symbols", user=True, assistant=True, symbols=True),
    Variant("system-x0.5", system=True, alpha=0.5),
    Variant("user+assistant-meaning", user=True, assistant=True, meaning=True),
)


def contexts(requests: Sequence[Request]) -> dict[str, Context]:
    """Per request id, the turns before its last user turn (as the corpus files hold them)."""
    out: dict[str, Context] = {}
    wanted = {r.id for r in requests}
    for path in sorted(corpus.CORPUS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if row["id"] in wanted:
                out[row["id"]] = context_of([(m["role"], _text(m.get("content"))) for m in row["messages"]])
    return out


def _text(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def context_of(turns: list[tuple[str, str]]) -> Context:
    last = max((i for i, (role, _) in enumerate(turns) if role == "user"), default=len(turns) - 1)
    before = turns[:last]
    user = next((t for role, t in reversed(before) if role == "user"), "")
    assistant = next((t for role, t in reversed(before) if role == "assistant"), "")
    system = "\n".join(t for role, t in turns if role in SYSTEM_ROLES)
    return Context(user[:CONTEXT_CHARS], assistant[:CONTEXT_CHARS], system[:CONTEXT_CHARS])


def multi_turn(context: Context) -> bool:
    return bool(context.previous_user or context.previous_assistant)


def _texts(context: Context, variant: Variant) -> list[tuple[str, str]]:
    """(namespace, text) of the variant's context turns."""
    out = []
    if variant.user:
        out.append(("x:" if variant.one_block else "u:", context.previous_user))
    if variant.assistant:
        out.append(("x:" if variant.one_block else "a:", context.previous_assistant))
    if variant.system:
        out.append(("s:", context.system))
    return out


def hashed_block(
    requests: Sequence[Request], ctx: dict[str, Context], variant: Variant, shape: tuple
) -> csr_matrix:
    """The variant's context words, hashed into the text buckets (shape of the base design)."""
    rows, cols, vals = [], [], []
    for i, r in enumerate(requests):
        if variant.short_only and r.view.last_user_chars > variant.short_only:
            continue
        blocks: dict[str, list[int]] = {}
        for ns, text in _texts(ctx[r.id], variant):
            t = features.split_turn(text)
            namespace = zlib.crc32(ns.encode())
            found = [features.bucket_of(w, namespace) for w in t.words]
            if variant.symbols:
                found += [features.bucket_of(s, namespace) for s in t.symbols]
            blocks.setdefault(ns, []).extend(found)
        for found in blocks.values():
            if found:
                norm = variant.alpha / math.sqrt(len(found))
                for b in found:
                    rows.append(i)
                    cols.append(b)
                    vals.append(norm)
    return csr_matrix((vals, (rows, cols)), shape=shape)


def meaning_block(requests: Sequence[Request], ctx: dict[str, Context], variant: Variant) -> np.ndarray:
    """BLOCK_SCALE x alpha x the mean vector of the context turns' distinct words (zeros without any)."""
    dims = table()[2].shape[1]
    out = np.zeros((len(requests), dims))
    for i, r in enumerate(requests):
        if variant.short_only and r.view.last_user_chars > variant.short_only:
            continue
        words = [w for _, text in _texts(ctx[r.id], variant) for w in features.split_turn(text).words]
        found = [v for v in map(word_vector, dict.fromkeys(words)) if v is not None]
        if found:
            out[i] = variant.alpha * BLOCK_SCALE * np.mean(found, axis=0)
    return out


def paired(requests: Sequence[Request], mask: np.ndarray, base: np.ndarray, other: np.ndarray) -> str:
    """The task accuracy's change from ``base`` to ``other`` (task probabilities) over ``mask``, with the
    standard error of a paired difference (the requests one gets right and the other wrong)."""
    truth = np.array([corpus.TASKS.index(r.task) for r in requests])[mask]
    a = base[mask].argmax(axis=1) == truth
    b = other[mask].argmax(axis=1) == truth
    n = int(mask.sum())
    gained, lost = int((b & ~a).sum()), int((a & ~b).sum())
    return f"task {100 * (gained - lost) / n:+.1f} +- {100 * math.sqrt(gained + lost) / n:.1f} (+{gained} -{lost})"


def report(
    name: str, requests: Sequence[Request], multi: np.ndarray, p: tuple[np.ndarray, np.ndarray]
) -> None:
    parts = []
    for label, mask in (("all", np.ones(len(requests), bool)), ("multi", multi), ("single", ~multi)):
        subset = [r for r, m in zip(requests, mask, strict=True) if m]
        s = scores(subset, p[0][mask], p[1][mask])
        parts.append(
            f"{label}({len(subset)}) task {100 * s['task']:.1f} tier {100 * s['tier']:.1f} "
            f"c->s {100 * s['complex->simple']:.1f} gate {100 * s['simple passing the gate']:.1f}"
        )
    print(f"{name:28s} " + " | ".join(parts), flush=True)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m zeta_dev.classifier.context_cv", description=__doc__)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--variants", default=",".join(v.name for v in VARIANTS))
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--baseline-probabilities",
        help="an .npy of the current features' out-of-fold task probabilities, "
        "written by a run with the baseline, to compare against (paired) without refitting it",
    )
    args = parser.parse_args(argv)
    train = corpus.select(corpus.load(), "train")
    ctx = contexts(train)
    multi = np.array([multi_turn(ctx[r.id]) for r in train])
    print(f"{len(train)} train requests ({multi.sum()} multi-turn), {args.folds} folds by group", flush=True)
    base = design([r.view for r in train], with_context=False)
    # The base's last columns are the word-meaning blocks (dense): counted as extra so every fold fits them.
    dense = base.shape[1] - features.BUCKETS - len(features.all_structure_names())
    baseline: np.ndarray | None = None
    if args.baseline_probabilities:
        baseline = np.load(args.baseline_probabilities)
    elif not args.no_baseline:
        p = out_of_fold(train, base, dense, False, args.folds)
        report("current features", train, multi, p)
        baseline = p[0]
        np.save(f"/tmp/context_cv_baseline_{args.folds}.npy", baseline)
    wanted = args.variants.split(",")
    for variant in (v for v in VARIANTS if v.name in wanted):
        if variant.meaning:
            block = meaning_block(train, ctx, variant)
            x = hstack([base, csr_matrix(block)]).tocsr()
            extra = dense + block.shape[1]
        else:
            x = (base + hashed_block(train, ctx, variant, base.shape)).tocsr()
            extra = dense
        p = out_of_fold(train, x, extra, False, args.folds)
        report(variant.name, train, multi, p)
        if baseline is not None:
            print(
                f"{'':28s} against the current features: all {paired(train, np.ones(len(train), bool), baseline, p[0])}"
                f" | multi {paired(train, multi, baseline, p[0])}",
                flush=True,
            )


if __name__ == "__main__":
    main()

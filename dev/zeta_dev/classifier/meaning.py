"""The training side of the word-meaning blocks (`zeta_operator.router.meaning`).

`block` is the blocks' columns in the design matrix: for the last user turn's distinct words, then for its
instruction's, the mean of their vectors from the committed table (``TABLE``, made by ``python -m
zeta_dev.classifier.distil``), a word outside the table counting as the mean of its known pieces
(`meaning.pieces`), times `BLOCK_SCALE`. `entry` turns the fitted weights of those columns into the weights
file's ``meaning`` entry: per table word and block, its vector times the block's weights (the blocks are
linear, so the router's mean of these rows is the block's output).
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from zeta_operator.router import features
from zeta_operator.router.meaning import pieces
from zeta_operator.router.payload import PromptView

from . import distil

TABLE = distil.TABLE_FILE
BLOCK_SCALE = 8.0
"""The mean vector's norm is about 0.12 on the train split, for the turn and for the instruction (root mean
square): times 8 brings it near 1, the text block's norm, so one L2 penalty suits all (as in ``python -m
zeta_dev.classifier.embedding_cv``, which scales each block to a norm of 1 exactly)."""
BLOCKS = ("turn", "instruction")


@cache
def table(path: Path = TABLE) -> tuple[tuple[str, ...], dict[str, int], np.ndarray]:
    """(words, word -> row, vectors) of the committed table."""
    words, vectors = distil.read_table(path)
    return tuple(words), {w: i for i, w in enumerate(words)}, vectors


def word_vector(word: str) -> np.ndarray | None:
    """The table's vector of a word, else the mean of its pieces', else None."""
    _, index, vectors = table()
    if word in index:
        return vectors[index[word]]
    found = pieces(word, index)
    return vectors[[index[p] for p in found]].mean(axis=0) if found else None


def block(views: Sequence[PromptView]) -> np.ndarray:
    """One row per view: BLOCK_SCALE x the mean vector of its last user turn's distinct words, then of its
    instruction's (zeros where no word counts)."""
    dims = table()[2].shape[1]
    out = np.zeros((len(views), len(BLOCKS) * dims))
    for i, view in enumerate(views):
        turn = features.split_turn(view.last_user)
        for b, words in enumerate((turn.words, turn.instruction)):
            found = [v for v in map(word_vector, words) if v is not None]
            if found:
                out[i, b * dims : (b + 1) * dims] = BLOCK_SCALE * np.mean(found, axis=0)
    return out


def entry(weights: np.ndarray) -> dict[str, Any]:
    """The ``meaning`` entry for the blocks' weights (outputs x blocks * dims): per block, each word's outputs
    as int16 with a power-of-two scale per output, words in table order."""
    words, _, vectors = table()
    dims = vectors.shape[1]
    data: dict[str, Any] = {"words": "\n".join(words)}
    for b, name in enumerate(BLOCKS):
        rows = BLOCK_SCALE * vectors @ weights[:, b * dims : (b + 1) * dims].T  # words x outputs
        peak = np.abs(rows).max(axis=0)
        scale = [2.0 ** math.floor(math.log2(32767 / p)) if p > 0 else 1.0 for p in peak]
        q = np.rint(rows * np.array(scale)).astype("<i2")
        data[name] = {"rows": base64.b64encode(q.tobytes()).decode(), "scale": scale}
    return data

"""What the words of a turn mean, for the learned model: two blocks of outputs from distilled word vectors.

Training (``python -m zeta_dev.classifier.train``) gives the model, besides the hashed n-grams, the mean of
the vectors of the last user turn's distinct words, and the same over the words of its `features.instruction`,
from a static table distilled offline from a multilingual sentence encoder (``python -m
zeta_dev.classifier.distil``; provenance in dev/corpus/README.md): words that mean alike get alike vectors,
whatever their spelling or language, which 3,000 training requests cannot teach by themselves. A word the
table lacks counts as the mean of its greedy known `pieces` (a German compound, a run of Chinese or Japanese
text, ``crashlooping``), or not at all when it has none.

The model is linear, so a block's outputs are the mean over the words of each word's own outputs (its vector
times the block's weights): training precomputes them per table word, and the weights file stores one row of
nine integers per word and block. No table, no vector arithmetic and no encoder at runtime: a dictionary
lookup and a big-int addition per word, like the n-gram rows (`model`). The rows are packed like `model`'s
(``LANE_BITS`` per output, ``OFFSET`` added, a count lane holding 1), so a turn's sum carries how many of its
words counted.
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Callable, Container
from typing import Any

LONGEST_PIECE = 12
UNKNOWN_CACHE_SIZE = 20_000
"""Words outside the table whose rows (from their pieces) are kept (cleared when full)."""


def pieces(word: str, vocabulary: Container[str]) -> list[str]:
    """Greedy longest known pieces of a word, left to right: at least 3 characters (or 1 outside ASCII: a
    Chinese or Japanese run of characters is a single "word" to the tokeniser); a character no piece starts
    at is skipped."""
    shortest = 3 if word.isascii() else 1
    found: list[str] = []
    start = 0
    while start < len(word):
        for end in range(min(len(word), start + LONGEST_PIECE), start + shortest - 1, -1):
            if word[start:end] in vocabulary:
                found.append(word[start:end])
                start = end
                break
        else:
            start += 1
    return found


class WordMeaning:
    """One block of the weights file's ``meaning`` entry, loaded: word -> packed row of its outputs."""

    def __init__(
        self,
        words: list[str],
        index: dict[str, int],
        block: dict[str, Any],
        outputs: int,
        *,
        pack: Callable[[list[int]], int],
        pack_rows: Callable[[bytes, int], list[int]],
        lane_bits: int,
        offset: int,
    ) -> None:
        raw = base64.b64decode(block["rows"], validate=True)
        q = array("h")
        q.frombytes(raw)
        if sys.byteorder != "little":
            q.byteswap()  # the file is little-endian
        if len(q) != len(words) * outputs or len(block["scale"]) != outputs:
            raise ValueError(f"meaning rows hold {len(q)} values, expected {len(words)} words x {outputs}")
        self._q = q
        self._outputs = outputs
        self._pack = pack
        self._index = index
        """Word -> its row number (``{w: i for i, w in enumerate(words)}``, built once for both blocks)."""
        self._rows = dict(zip(words, pack_rows(raw, outputs), strict=True))
        self._unknown: dict[str, int] = {}
        """Words outside the table whose rows (their pieces' mean; 0: no piece, the word counts for nothing)
        `_row` added to ``_rows``."""
        self._heads = tuple((lane_bits * i, 1.0 / float(s)) for i, s in enumerate(block["scale"]))
        """(lane shift, 1 / scale) per output."""
        self._mask = (1 << lane_bits) - 1
        self._count_shift = lane_bits * outputs
        self._offset = offset

    def logits(self, words: list[str]) -> list[float] | None:
        """Per output, the mean of the ``words``' rows; None when no word counts (the block adds nothing)."""
        try:
            total = sum(map(self._rows.__getitem__, words))
        except KeyError:
            total = sum(map(self._row, words))
        return self.outputs_of(total)

    def row(self, word: str) -> int:
        """The word's packed row (its pieces' for a word outside the table; 0: it counts for nothing)."""
        row = self._rows.get(word)
        return self._row(word) if row is None else row

    def outputs_of(self, total: int) -> list[float] | None:
        """`logits` from the sum of the words' rows (the model may add them up with its own, `model`)."""
        n = total >> self._count_shift
        if not n:
            return None
        mask, base, per_word = self._mask, n * self._offset, 1.0 / n
        return [(((total >> shift) & mask) - base) * per_word * inverse for shift, inverse in self._heads]

    def clear_cache(self) -> None:
        """Forget the rows of words outside the table."""
        for word in self._unknown:
            del self._rows[word]
        self._unknown.clear()

    def _row(self, word: str) -> int:
        row = self._rows.get(word)
        if row is None:
            # Kept with the table's rows, so that the next turn with this word takes the fast path.
            if len(self._unknown) >= UNKNOWN_CACHE_SIZE:
                self.clear_cache()
            row = self._rows[word] = self._unknown[word] = self._pieces_row(word)
        return row

    def _pieces_row(self, word: str) -> int:
        """The packed mean of the rows of the word's pieces (rounded to integers), 0 when it has none."""
        found = [self._index[p] for p in pieces(word, self._index)]
        if not found:
            return 0
        k, q = self._outputs, self._q
        sums = [sum(q[i * k + o] for i in found) for o in range(k)]
        return self._pack([round(s / len(found)) for s in sums])


def blocks(data: dict[str, Any] | None, outputs: int, **packing: Any) -> tuple[WordMeaning, ...]:
    """The weights file's ``meaning`` entry (absent: no block): the turn's block, then the instruction's."""
    if not data:
        return ()
    words = str(data["words"]).split("\n")
    index = {w: i for i, w in enumerate(words)}
    return tuple(
        WordMeaning(words, index, data[name], outputs, **packing) for name in ("turn", "instruction")
    )

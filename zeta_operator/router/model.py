"""The learned request classifier: a linear model over `features`, loaded once from a weights file.

Besides the hashed features, two word-meaning blocks (`meaning`: per word, rows precomputed from a distilled
word-vector table) add the mean over the turn's words and over its instruction's. Two softmax heads share the
features: task type (``chat``, ``code``, ``reasoning``, ``summarize``) and
complexity (1..5), each with its own temperature fitted on a calibration split, so the probabilities it reports
mean what they say (see docs/classifier.md for the reliability table).

The weights file (``classifier.json.gz`` next to this module, made by ``python -m zeta_dev.classifier.train``)
holds integer weights: ``w = q / scale`` per output, ``q`` a 16-bit integer, so the bytes are reproducible and
the file stays small. A missing, corrupt or mismatched file raises `ModelError` with the reason; the router
then refuses to start unless its operator chose the rule classifier (``--classifier rules``).

Why the weights are packed: a request has a few hundred active features and the model has nine outputs; adding
nine floats per feature in Python costs more than the whole budget (100 us). Each hash bucket's nine integers
are instead packed into one Python int, ``LANE_BITS`` bits per output with a constant offset that keeps every
lane non-negative, and a tenth lane holding 1 (the count of rows summed), so one big-int addition per feature
adds all nine and counts it (exactly: integers do not round), and the lanes are split apart once at the end.
The additions run in C (``sum(map(...))``), not as a Python loop. Words repeat across requests, so the packed
sum of a word's buckets (the word and its n-grams) is cached per word, as are a word's row as an instruction
word and a symbol run's row. The instruction words are summed apart and normalised by their own count (the rest
of the turn by its count): a long paste no longer drowns the ask (`features.text_buckets`). So are the words of
the turns before the last user turn and of the system prompt (`features.context_words`, one block each, when
there are any).
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from . import features, meaning
from .payload import PromptView

WEIGHTS_FILE = Path(__file__).with_name("classifier.json.gz")
FILE_FORMAT = "zeta-classifier/3"
"""3: the system prompt's words are a context block (`features.CONTEXT_NAMESPACES`), so weights fitted without
it would read other buckets' rows there. 2: the instruction words are a block of their own, normalised by their
own count (1 normalised them with the rest of the turn), and an optional ``meaning`` block
(`meaning.WordMeaning`)."""
LANE_BITS = 40
OFFSET = 1 << 15
"""Added to every int16 weight so a lane never goes negative; a sum of n rows carries n * OFFSET."""
TOKEN_CACHE_SIZE = 100_000
"""Distinct words whose packed rows each of the word caches keeps (cleared when full: a miss costs a few
microseconds). On a stream drawn from the whole corpus's typical chat (86,000 distinct words), 50,000 kept
clearing: 100,000, with a short turn's words kept once (`_word_and_instruction`), took the cost per request
from 225 to 136 us for about the memory the old caches used (``bench.bench_classifier --stream``,
docs/benchmarks.md)."""
SIMPLE_MAX = 2
"""Complexity tiers: simple is 1..SIMPLE_MAX, complex above (labelling rubric, dev/corpus/LABELLING.md)."""


class ModelError(Exception):
    """The weights file is missing, corrupt or made for other features; the message says which."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """Calibrated probabilities of one request."""

    tasks: dict[str, float]
    """Task type -> probability (sums to 1)."""
    complexity: tuple[float, ...]
    """Probability of complexity 1..5 (index 0 is complexity 1)."""
    earlier: tuple[float, ...] | None = None
    """For a follow-up: P(complexity <= k), k = 1..5, of the ask it follows (`PromptView.earlier`)."""

    def at_most(self, level: int) -> float:
        """P(complexity <= level)."""
        return min(1.0, sum(self.complexity[: max(0, level)]))

    def cumulative(self) -> tuple[float, ...]:
        """P(complexity <= k) for k = 1..5."""
        return tuple(min(1.0, p) for p in itertools.accumulate(self.complexity))

    @property
    def simple(self) -> float:
        """P(the request is simple): complexity <= SIMPLE_MAX."""
        return self.at_most(SIMPLE_MAX)

    @property
    def spill_simple(self) -> float:
        """What the spill gate compares with offloadConfidence: `simple`, and for a follow-up the lower of it
        and the same probability of the ask it follows ("now prove it" is as hard as what it continues, and
        its own words do not say so)."""
        return spill_at_most(self.cumulative(), self.earlier)[SIMPLE_MAX - 1]

    def complexity_estimate(self) -> int:
        """The most likely level within the more likely tier (so the level and the tier never disagree)."""
        levels = range(1, SIMPLE_MAX + 1) if self.simple >= 0.5 else range(SIMPLE_MAX + 1, 6)
        return max(levels, key=lambda level: self.complexity[level - 1])


def spill_at_most(at_most: tuple[float, ...], earlier: tuple[float, ...] | None) -> tuple[float, ...]:
    """The spill gate's P(complexity <= k), k = 1..5: ``at_most``, and for a follow-up, level by level, the lower
    of it and ``earlier``, the same of the ask it follows (the one definition of the rule, for the router's
    `classify.spill_floor` and the evaluation's `Prediction.spill_simple`)."""
    return at_most if earlier is None else tuple(map(min, at_most, earlier))


class LearnedModel:
    """Loaded once; `predict` is the per-request call (no I/O, bounded by the prompt window)."""

    def __init__(self, data: dict[str, Any], *, source: str) -> None:
        self.source = source
        self.tasks: tuple[str, ...] = tuple(data["tasks"])
        self.levels: tuple[int, ...] = tuple(data["complexities"])
        self.outputs = len(self.tasks) + len(self.levels)
        self.bias: tuple[float, ...] = tuple(float(b) for b in data["bias"])
        self.scale: tuple[float, ...] = tuple(float(s) for s in data["scale"])
        self.task_temperature = float(data["temperature"]["task"])
        self.complexity_temperature = float(data["temperature"]["complexity"])
        self.offload_confidence = float(data["offloadConfidence"])
        self.corpus = str(data.get("corpus", ""))
        self._mask = (1 << LANE_BITS) - 1
        shifts = (LANE_BITS * i for i in range(self.outputs))
        self._heads = tuple(zip(self.bias, shifts, self.scale, strict=False))  # parse() checks the lengths
        """(bias, lane shift, scale) per output."""
        self._count_shift = LANE_BITS * self.outputs
        self._ask_shift = self._count_shift + LANE_BITS
        """The instruction words' rows sit above the text block's lanes and count: one sum adds both blocks."""
        self._block_mask = (1 << self._ask_shift) - 1
        self._rows = _text_rows(data["text"], self.outputs)
        structure = {name: _pack(q) for name, q in data["structure"].items()}
        # By position in features.all_structure_names(); a name without weights adds nothing and counts 0.
        self._structure_rows = [structure.get(name, 0) for name in features.all_structure_names()]
        self._meaning = meaning.blocks(
            data.get("meaning"),
            self.outputs,
            pack=_pack,
            pack_rows=pack_rows,
            lane_bits=LANE_BITS,
            offset=OFFSET,
        )
        """The word-meaning blocks: of the turn's words, then of its instruction's (none in a file without)."""
        self._meaning_shifts = tuple(self._ask_shift * (2 + i) for i in range(len(self._meaning)))
        """Each meaning block's lanes sit above the instruction block's, so that the one sum over the turn's
        words adds all four blocks (a block's lanes and count are as wide as the text block's)."""
        self._cache: dict[str, int] = {}
        """Word -> packed sum of its buckets' rows and its turn meaning row (shifted to that block's lanes);
        symbol run -> its row (the two never look alike)."""
        self._instruction_cache: dict[str, int] = {}
        """Word -> its row as an instruction word and its instruction meaning row (each shifted to its block's
        lanes)."""
        self._both_cache: dict[str, int] = {}
        """Word -> both: a word of a turn that is all instruction (most short turns) adds both at once."""
        self._context_caches: tuple[dict[str, int], ...] = tuple({} for _ in features.CONTEXT_NAMESPACES)
        """Per context block (`features.CONTEXT_NAMESPACES`): word -> its row in that block's namespace."""

    def logits(self, view: PromptView, turn: features.TurnTokens | None = None) -> list[float]:
        """Raw (untempered) outputs: the task heads, then the complexity heads.

        ``turn``: `features.split_turn` of the view's last user turn, when the caller has it."""
        if turn is None:
            turn = features.split_turn(view.last_user)
        both = self._text_sum(turn)
        text = both & self._block_mask
        ask = (both >> self._ask_shift) & self._block_mask
        indices = features.structure_indices(view, words=turn.word_count)
        struct = sum(map(self._structure_rows.__getitem__, indices))
        n = text >> self._count_shift
        text_norm = 1.0 / math.sqrt(n) if n else 0.0
        m = ask >> self._count_shift
        ask_norm = 1.0 / math.sqrt(m) if m else 0.0
        text_offset = n * OFFSET
        ask_offset = m * OFFSET
        struct_offset = (struct >> self._count_shift) * OFFSET
        mask = self._mask
        # Per output: b + (t * text_norm + a * ask_norm + s) / scale, t, a and s that output's lane of each
        # sum less its offsets; then the word-meaning blocks.
        z = [
            b
            + (
                (((text >> shift) & mask) - text_offset) * text_norm
                + (((ask >> shift) & mask) - ask_offset) * ask_norm
                + (((struct >> shift) & mask) - struct_offset)
            )
            / scale
            for b, shift, scale in self._heads
        ]
        if view.previous_user or view.previous_assistant or view.system_prompt:
            self._add_context(z, view)
        for block, shift in zip(self._meaning, self._meaning_shifts, strict=True):
            added = block.outputs_of((both >> shift) & self._block_mask)
            if added is not None:
                z = [a + m for a, m in zip(z, added, strict=True)]
        return z

    def _add_context(self, z: list[float], view: PromptView) -> None:
        """Adds the context blocks (`features.context_words`) to ``z``: each block's rows summed, less their
        offsets, times the block's weight (`features.CONTEXT_WEIGHTS`) / sqrt(their count)."""
        mask, count_shift = self._mask, self._count_shift
        for rows, namespace, weight, words in zip(
            self._context_caches,
            features.CONTEXT_NAMESPACES,
            features.CONTEXT_WEIGHTS,
            features.context_words(view),
            strict=True,
        ):
            if not words:
                continue
            try:
                total = sum(map(rows.__getitem__, words))
            except KeyError:
                total = sum(self._context_row(rows, namespace, w) for w in words)
            n = total >> count_shift
            norm = weight / math.sqrt(n)
            offset = n * OFFSET
            for i, (_, shift, scale) in enumerate(self._heads):
                z[i] += (((total >> shift) & mask) - offset) * norm / scale

    def _context_row(self, cache: dict[str, int], namespace: int, word: str) -> int:
        hit = cache.get(word)
        if hit is None:
            hit = self._cached(cache, word, self._rows[features.bucket_of(word, namespace)])
        return hit

    def predict(
        self, view: PromptView, turn: features.TurnTokens | None = None, *, earlier: bool = True
    ) -> Prediction:
        """``turn``: as for `logits`. A follow-up costs a second prediction, of the ask it follows, unless
        ``earlier`` is False (the router's classifier asks for that one on demand, `at_most`)."""
        z = self.logits(view, turn)
        k = len(self.tasks)
        task_p = softmax(z[:k], self.task_temperature)
        return Prediction(
            tasks=dict(zip(self.tasks, task_p, strict=True)),
            complexity=tuple(softmax(z[k:], self.complexity_temperature)),
            earlier=None if view.earlier is None or not earlier else self.predict(view.earlier).cumulative(),
        )

    def at_most(self, view: PromptView) -> tuple[float, ...]:
        """P(complexity <= k), k = 1..5, of ``view`` alone (the router's follow-up gate asks it of the earlier
        ask, on demand: `classify.Classification.earlier`)."""
        return self.predict(view, earlier=False).cumulative()

    def _text_sum(self, turn: features.TurnTokens) -> int:
        """The packed sums of the turn's text buckets (with repeats), above ``_ask_shift`` of its instruction
        words, and above those of the meaning blocks' rows (`_meaning_shifts`), each block's count in its last
        lane."""
        if turn.instruction is turn.words:
            try:  # the usual case: every word seen before
                total = sum(map(self._both_cache.__getitem__, turn.words))
            except KeyError:
                total = sum(map(self._word_and_instruction, turn.words))
        else:
            try:
                total = sum(map(self._cache.__getitem__, turn.words))
                total += sum(map(self._instruction_cache.__getitem__, turn.instruction))
            except KeyError:
                total = sum(map(self._word_sum, turn.words))
                total += sum(map(self._instruction_row, turn.instruction))
        try:
            return total + sum(map(self._cache.__getitem__, turn.symbols))
        except KeyError:
            return total + sum(map(self._symbol_row, turn.symbols))

    def cached_words(self) -> int:
        """How many entries the fullest of the word caches holds (each is bounded by TOKEN_CACHE_SIZE)."""
        return max(len(self._cache), len(self._instruction_cache), len(self._both_cache))

    def clear_cache(self) -> None:
        """Forget every cached word and symbol run (the benchmark's worst case: every word is new)."""
        self._cache.clear()
        self._instruction_cache.clear()
        self._both_cache.clear()
        for context_cache in self._context_caches:
            context_cache.clear()
        for block in self._meaning:
            block.clear_cache()

    def _word_sum(self, word: str) -> int:
        hit = self._cache.get(word)
        if hit is None:
            hit = self._cached(self._cache, word, self._text_row(word))
        return hit

    def _word_and_instruction(self, word: str) -> int:
        hit = self._both_cache.get(word)
        if hit is None:
            # Computed, not read from nor kept in the other two caches: most words are only ever read here
            # (short turns are all instruction), and keeping them thrice halved the words the memory held.
            hit = self._cached(self._both_cache, word, self._text_row(word) + self._ask_row(word))
        return hit

    def _instruction_row(self, word: str) -> int:
        hit = self._instruction_cache.get(word)
        if hit is None:
            hit = self._cached(self._instruction_cache, word, self._ask_row(word))
        return hit

    def _text_row(self, word: str) -> int:
        """The packed sum of the word's buckets and its turn meaning row."""
        row = sum(map(self._rows.__getitem__, features.known_word_buckets(word)))
        if self._meaning:
            row += self._meaning[0].row(word) << self._meaning_shifts[0]
        return row

    def _ask_row(self, word: str) -> int:
        """The word's row as an instruction word and its instruction meaning row, at their lanes."""
        row = self._rows[features.bucket_of(word, features.NS_INSTRUCTION)] << self._ask_shift
        if len(self._meaning) > 1:
            row += self._meaning[1].row(word) << self._meaning_shifts[1]
        return row

    def _symbol_row(self, run: str) -> int:
        hit = self._cache.get(run)
        if hit is None:
            hit = self._cached(self._cache, run, self._rows[features.symbol_bucket(run)])
        return hit

    @staticmethod
    def _cached(cache: dict[str, int], key: str, value: int) -> int:
        if len(cache) >= TOKEN_CACHE_SIZE:
            cache.clear()
        cache[key] = value
        return value


def softmax(z: list[float], temperature: float) -> list[float]:
    top = max(z)
    e = [math.exp((v - top) / temperature) for v in z]
    total = sum(e)
    return [v / total for v in e]


def _pack(q: list[int]) -> int:
    """One row: ``q`` in its lanes (plus OFFSET each), and 1 in the count lane."""
    packed = 1 << (LANE_BITS * len(q))
    for i, v in enumerate(q):
        packed |= (int(v) + OFFSET) << (LANE_BITS * i)
    return packed


def pack_rows(little_endian: bytes, outputs: int) -> list[int]:
    """Each row of ``outputs`` little-endian int16 as `_pack` packs it. Done on bytes, one lane across all rows
    at a time, not with an integer loop per weight: loading the file's 400,000 rows is most of a router's
    start-up otherwise. A lane is LANE_BITS / 8 bytes: its weight plus OFFSET (the int16 with its sign bit
    flipped) in the low two, zeros above; the count lane holds 1."""
    lane, row = LANE_BITS // 8, 2 * outputs
    rows = len(little_endian) // row
    stride = lane * outputs + 1
    out = bytearray(rows * stride)
    for i in range(outputs):
        out[lane * i :: stride] = little_endian[2 * i :: row]
        out[lane * i + 1 :: stride] = little_endian[2 * i + 1 :: row].translate(_FLIP_SIGN)
    out[lane * outputs :: stride] = b"\x01" * rows
    view = memoryview(out)
    return [int.from_bytes(view[j : j + stride], "little") for j in range(0, len(out), stride)]


_FLIP_SIGN = bytes(b ^ 0x80 for b in range(256))
"""Applied to the high byte of an int16: adds OFFSET (1 << 15), modulo 2 ** 16."""


def _text_rows(encoded: str, outputs: int) -> list[int]:
    raw = base64.b64decode(encoded, validate=True)
    if len(raw) != 2 * features.BUCKETS * outputs:
        raise ModelError(f"text weights hold {len(raw) // 2} values, expected {features.BUCKETS} x {outputs}")
    zero = _pack([0] * outputs)
    # Most buckets have no weight: they share one row object, as before the file was packed on load.
    return [zero if r == zero else r for r in pack_rows(raw, outputs)]


def parse(raw: bytes, *, source: str) -> LearnedModel:
    """A model from the bytes of a weights file; ModelError with the reason when they are not one."""
    try:
        data = json.loads(gzip.decompress(raw))
    except (OSError, EOFError, ValueError) as e:  # gzip.BadGzipFile is an OSError; JSON errors ValueErrors
        raise ModelError(f"{source}: not a gzip-compressed JSON weights file ({e})") from None
    if not isinstance(data, dict) or data.get("format") != FILE_FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ModelError(f"{source}: format {got!r}, expected {FILE_FORMAT!r}")
    if data.get("features") != features.FEATURES_VERSION or data.get("hashBits") != features.HASH_BITS:
        raise ModelError(
            f"{source}: made for features {data.get('features')!r} with {data.get('hashBits')} hash bits; "
            f"this router computes {features.FEATURES_VERSION!r} with {features.HASH_BITS}: retrain"
        )
    try:
        model = LearnedModel(data, source=source)
    except (KeyError, TypeError, ValueError) as e:
        raise ModelError(f"{source}: malformed weights file ({type(e).__name__}: {e})") from None
    except ModelError as e:
        raise ModelError(f"{source}: {e}") from None
    if len(model.bias) != model.outputs or len(model.scale) != model.outputs or min(model.scale) <= 0:
        raise ModelError(f"{source}: bias and scale must have {model.outputs} entries, scales above zero")
    if not (model.task_temperature > 0 and model.complexity_temperature > 0):
        raise ModelError(f"{source}: temperatures must be above zero")
    return model


def load(path: Path = WEIGHTS_FILE) -> LearnedModel:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ModelError(f"cannot read the classifier weights {path}: {e.strerror}") from None
    return parse(raw, source=str(path))


@cache
def shipped() -> LearnedModel:
    """The weights that ship with the package, loaded once per process (ModelError when unusable)."""
    return load()

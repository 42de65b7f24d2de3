"""Evidence from the policy's labelled examples (``spec.classifier.examples``): the nearest one to a request.

Built once per routing table version (`ExampleIndex.build`, from `classify.Classifier`, which a table
snapshot builds once): each example is featurised then, never per request. A request's last user turn (the
window of `payload.PromptView`) is compared with every example in the learned model's hashed feature space,
restricted to words: the buckets of each distinct word and of its character 3- and 4-grams (`features.
token_buckets`), so typos, inflections and scripts without spaces still match. Similarity is the cosine of the
two sets of buckets, shared / sqrt(size x size): 1.0 for the same words, about 0.23 for the nearest of 64
unrelated prompts (median). Word pairs and symbol runs are left out because they cost as much again per request and add little to
"is this the same ask". The per-request cost is one pass over the request's distinct words (the classifier
splits the turn once for this and the learned model, `features.split_turn`; a word's buckets are cached, in
`features.cached_word_buckets`, which the model reads too, so a new word is hashed once) and one big-integer
addition per bucket that some example holds, whatever the number of examples: each bucket carries a 1 in the
16-bit lane of every example that has it. Buckets that many examples with different
labels hold (`COMMON_SHARE`) are left out on both sides: they tell examples apart least and cost the most.

What a match means is asymmetric, because of "never down on doubt":

- **Exact** (the same text ignoring case and spacing): the example's task type and complexity, certain, as a
  keyword rule would be. Only an exact match can make a request look simple.
- **Near** (similarity at least `MATCH_FROM`): evidence with a weight that rises linearly from 0 at
  `MATCH_FROM` to 1 at `FULL_AT`. The example's task type gets that weight against the model's probabilities;
  the complexity distribution is only ever pushed up: P(complexity <= k) for every k below the example's level
  is scaled by (1 - weight) and nothing is raised. A near miss can thus make a request look complex, confidently
  when it is close, and can never make it look simpler, so it never lets a request spill down.

Where the thresholds come from (``python -m bench.bench_examples --similarity``, on the classifier's corpus of
3,323 written prompts, each prompt's window as the router sees it): 400 prompts, each against 64 random prompts of
other groups: the most similar one scored 0.23 (median), 0.34 (90th percentile), 0.49 (99th); the one pair above
0.6 was the same template with the same labels ("What does ARR stand for?" / "what does OEE stand for", 0.84).
But of 593 pairs that paste the same material with another ask, 352 score 0.9 or more, 119 of them a simple turn
against a complex one: so a near match never lowers complexity.
"""

from __future__ import annotations

import math
import re
import sys
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

from ..api.policy import ClassifierExample, normalized_example_text
from . import features

MATCH_FROM = 0.7
"""Similarity from which an example is evidence (99% of unrelated prompts stay below 0.5)."""
FULL_AT = 0.9
"""Similarity from which an example's task type outweighs the model and its level is a firm lower bound."""
EXACT = 1.0 - 1e-9
"""A cosine this close to 1 means the same bag of tokens: then the texts are compared exactly."""
LANE_BITS = 16
"""Per example, the count of shared buckets is summed in its own 16-bit lane of one big integer (an example
of 2048 characters has a few thousand buckets, well below 65536)."""
COMMON_SHARE = 8
COMMON_FLOOR = 2
"""A bucket held by more than max(COMMON_FLOOR, examples // COMMON_SHARE) examples with different labels is
common (the n-grams of "the", "ing", "<a>"): it is left out of the comparison on both sides. It does not tell
examples apart and it is most of the work (each bucket some example holds costs an addition per request). Words
that examples with the same labels share (a template of your traffic) are kept."""
WORD_CACHE_SIZE = 20_000
"""Distinct request words whose buckets are kept split as the index needs them (cleared when full)."""
MAX_EXAMPLES = 256
"""More than the API allows (64): the index is sized for it."""
_WORD = re.compile(r"\w+")
_LANE_TYPE = next(code for code in "HIL" if array(code).itemsize * 8 == LANE_BITS)


@dataclass(frozen=True, slots=True)
class ExampleMatch:
    """The example nearest to a request and how near it is."""

    task_type: str
    complexity: int
    similarity: float
    exact: bool

    @property
    def weight(self) -> float:
        """How much this match counts, 0..1: 1 for an exact match, a linear ramp between the thresholds."""
        if self.exact:
            return 1.0
        return max(0.0, min(1.0, (self.similarity - MATCH_FROM) / (FULL_AT - MATCH_FROM)))


class ExampleIndex:
    """The featurised examples of one table version; `nearest` is the per-request call."""

    def __init__(self, examples: Sequence[ClassifierExample]) -> None:
        if len(examples) > MAX_EXAMPLES:
            raise ValueError(f"at most {MAX_EXAMPLES} examples, got {len(examples)}")
        self._examples = tuple(examples)
        self._exact = {normalized_example_text(e.text): i for i, e in enumerate(self._examples)}
        sets = [self._buckets(features.distinct_words(e.text)) for e in self._examples]
        frequency = Counter(chain.from_iterable(sets))
        most = max(COMMON_FLOOR, len(sets) // COMMON_SHARE)
        frequent = {b for b, n in frequency.items() if n > most}
        labels: dict[int, set[tuple[str, int]]] = {}
        for e, bucket_set in zip(self._examples, sets, strict=True):
            for b in bucket_set & frequent:
                labels.setdefault(b, set()).add((e.task_type, e.complexity))
        self._common = frozenset(b for b, held_by in labels.items() if len(held_by) > 1)
        sets = [s - self._common for s in sets]
        self._sizes = tuple(len(s) for s in sets)
        self._packed: dict[int, int] = {}
        for i, bucket_set in enumerate(sets):
            for b in bucket_set:
                self._packed[b] = self._packed.get(b, 0) + (1 << (LANE_BITS * i))
        self._vocabulary = frozenset(self._packed)
        reach = MATCH_FROM * MATCH_FROM
        self._size_range = (math.ceil(min(self._sizes) * reach), math.floor(max(self._sizes) / reach))
        self._smallest = max(1, min(self._sizes))
        self._parts: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        """Request word -> its buckets that some example holds, and its other buckets (common ones left out)."""

    @classmethod
    def build(cls, examples: Sequence[ClassifierExample]) -> ExampleIndex | None:
        """None when there are no examples (the classifier then skips this step at no cost)."""
        return cls(examples) if examples else None

    def __len__(self) -> int:
        return len(self._examples)

    def similarities(
        self, turn: str, *, prune: bool = False, words: Sequence[str] | None = None
    ) -> list[float]:
        """The similarity of ``turn`` to each example, in order. ``prune``: all zeros when no example can reach
        `MATCH_FROM` by size alone (shared <= the smaller set, so the similarity <= sqrt(smaller / larger)).
        ``words``: the distinct words of the lower-cased turn (`features.TurnTokens.words`), when the caller
        has them."""
        parts = self._word_parts(features.distinct_words(turn) if words is None else words)
        held = set().union(*map(itemgetter(0), parts))
        return self._similarities(self._counts(held), self._size(held, parts), prune=prune)

    def nearest(
        self, turn: str, *, task: str | None = None, words: Sequence[str] | None = None
    ) -> ExampleMatch | None:
        """The most similar example at or above `MATCH_FROM` (of task type ``task`` only, when it is known);
        on a tie the more complex one. None when no example is that close. ``words``: as for `similarities`."""
        parts = self._word_parts(features.distinct_words(turn) if words is None else words)
        held = set().union(*map(itemgetter(0), parts))
        counts = self._counts(held)
        # The turn has at least len(held) buckets, and no example is smaller than the smallest: so no similarity
        # exceeds this bound (IEEE square root and division are monotonic, so the rounded ones do not either).
        # Most requests stop here, before the turn's other buckets are counted.
        if not held or max(counts) / math.sqrt(len(held) * self._smallest) < MATCH_FROM:
            return None
        best: tuple[float, int, int] | None = None
        for i, similarity in enumerate(self._similarities(counts, self._size(held, parts), prune=True)):
            if similarity < MATCH_FROM:
                continue
            e = self._examples[i]
            if task is not None and e.task_type != task:
                continue
            key = (similarity, e.complexity, -i)
            if best is None or key > best:
                best = key
        if best is None:
            return None
        similarity, _, minus_i = best
        if similarity >= EXACT:  # the same words: is one of the examples this very text?
            same = self._exact.get(normalized_example_text(turn))
            if same is not None and (task is None or self._examples[same].task_type == task):
                e = self._examples[same]
                return ExampleMatch(e.task_type, e.complexity, 1.0, exact=True)
        e = self._examples[-minus_i]
        return ExampleMatch(e.task_type, e.complexity, min(1.0, similarity), exact=False)

    def _similarities(self, counts: array[int], size: int, *, prune: bool) -> list[float]:
        if prune and not self._size_range[0] <= size <= self._size_range[1]:
            return [0.0] * len(self._examples)
        return [
            common / math.sqrt(size * example_size) if common else 0.0
            for common, example_size in zip(counts, self._sizes, strict=True)
        ]

    def _counts(self, held: set[int]) -> array[int]:
        """Per example, how many of the buckets ``held`` it has."""
        total = sum(map(self._packed.__getitem__, held))  # one addition counts a bucket for every example
        counts = array(_LANE_TYPE, total.to_bytes(LANE_BITS // 8 * len(self._examples), "little"))
        if sys.byteorder != "little":
            counts.byteswap()
        return counts

    @staticmethod
    def _size(held: set[int], parts: list[tuple[tuple[int, ...], tuple[int, ...]]]) -> int:
        """The turn's number of distinct buckets, common ones left out (held and other buckets never meet)."""
        return len(held) + len(set().union(*map(itemgetter(1), parts)))

    def _word_parts(self, words: Iterable[str]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        try:  # the usual case: every word seen before
            return list(map(self._parts.__getitem__, words))
        except KeyError:
            return list(map(self._parts_of, words))

    def _parts_of(self, word: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        hit = self._parts.get(word)
        if hit is None:
            buckets = features.cached_word_buckets(word)
            held = tuple(b for b in buckets if b in self._vocabulary)
            other = tuple(b for b in buckets if b not in self._vocabulary and b not in self._common)
            hit = (held, other)
            if len(self._parts) >= WORD_CACHE_SIZE:
                self._parts.clear()
            self._parts[word] = hit
        return hit

    @staticmethod
    def _buckets(words: Iterable[str]) -> set[int]:
        """The hash buckets of ``words`` (distinct, lower-cased) and of their character n-grams."""
        return set().union(*map(features.cached_word_buckets, words))


def pushed_up(at_most: tuple[float, ...], match: ExampleMatch) -> tuple[float, ...]:
    """P(complexity <= k) after a near match: scaled by (1 - weight) below the example's level, unchanged from
    it on. Never larger than before, so the request never looks simpler."""
    keep = 1.0 - match.weight
    return tuple(p * keep if k < match.complexity else p for k, p in enumerate(at_most, 1))


def estimate(at_most: tuple[float, ...], *, simple_max: int) -> int:
    """The most likely level within the more likely tier (simple is 1..simple_max), from P(complexity <= k)."""
    pmf = [p - (at_most[k - 1] if k else 0.0) for k, p in enumerate(at_most)]
    levels = (
        range(1, simple_max + 1) if at_most[simple_max - 1] >= 0.5 else range(simple_max + 1, len(pmf) + 1)
    )
    return max(levels, key=lambda level: pmf[level - 1])
